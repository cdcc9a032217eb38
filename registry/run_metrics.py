"""Each run's outcome as Prometheus series: to a Pushgateway on a cluster, to a textfile locally.

A promotion run exports its gate decision (``champion_gate_passed``), when it ran
(``champion_gate_last_run_timestamp_seconds``, what the stale-gate alert watches), and per compared metric
the difference against the champion with its interval (``champion_gate_difference``, ``_ci_low``,
``_ci_high``); locally, and for a cluster run ``champion trigger`` watched, also every step's wall seconds and whether KFP's step cache answered it
(``champion_step_seconds``, ``champion_step_cached``). A scheduled evaluation exports
``champion_scheduled_evaluation_healthy``, its failed checks and each metric's mean
(``champion_scheduled_evaluation_score``). Labels are the registered model, the metric, the slice and the
step: bounded, never content.

Nothing is sent anywhere unless a Pushgateway URL is configured; the local textfile (``<workspace>/metrics/``,
node_exporter's textfile format) is written by ``champion run``/``monitor``.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Gauge, push_to_gateway, write_to_textfile

from champion.errors import ChampionError
from evaluators.gate import comparison_intervals

JOB = "champion"


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def gate_metrics(model: str, decision: dict, *, at: float | None = None, registry: CollectorRegistry | None = None):
    """The gate's decision record (evaluators.decision) as gauges."""

    registry = registry or CollectorRegistry()
    Gauge(
        "champion_gate_passed", "1 when the last gate passed the challenger, else 0.", ["model"], registry=registry
    ).labels(model).set(1.0 if decision.get("gate") == "passed" else 0.0)
    Gauge(
        "champion_gate_last_run_timestamp_seconds",
        "When the last gate decided (Unix time).",
        ["model"],
        registry=registry,
    ).labels(model).set(at if at is not None else time.time())
    labels = ["model", "metric", "slice"]
    series = {
        key: Gauge(f"champion_gate_{key}", f"The last gate's {text}, challenger - champion.", labels, registry=registry)
        for key, text in (
            ("difference", "effect estimate"),
            ("ci_low", "interval's lower bound"),
            ("ci_high", "interval's upper bound"),
        )
    }
    for metric, tag, key, value in comparison_intervals(decision.get("checks", [])):
        series[key].labels(model, metric, tag or "all").set(float(value))
    return registry


def step_metrics(model: str, timeline: dict[str, dict], registry: CollectorRegistry) -> CollectorRegistry:
    """Each step's wall seconds and whether KFP's step cache answered it (a timeline: the local runner's, or
    pipelines.kubeflow.task_timeline of a cluster run)."""
    seconds = Gauge(
        "champion_step_seconds", "Wall seconds of the step in the last run.", ["model", "step"], registry=registry
    )
    cached = Gauge(
        "champion_step_cached", "1 when KFP's step cache answered the step.", ["model", "step"], registry=registry
    )
    for step, entry in timeline.items():
        if _finite(entry.get("seconds")):
            seconds.labels(model, step).set(float(entry["seconds"]))
        cached.labels(model, step).set(1.0 if entry.get("state") == "cached" else 0.0)
    return registry


def monitor_metrics(
    model: str, *, healthy: bool, checks: list[dict], scores: dict[str, float], at: float | None = None
) -> CollectorRegistry:
    registry = CollectorRegistry()
    Gauge(
        "champion_scheduled_evaluation_healthy",
        "1 when the live champion passed its last scheduled evaluation.",
        ["model"],
        registry=registry,
    ).labels(model).set(1.0 if healthy else 0.0)
    Gauge(
        "champion_scheduled_evaluation_failed_checks",
        "Failed checks of the last scheduled evaluation.",
        ["model"],
        registry=registry,
    ).labels(model).set(float(sum(not c.get("passed", False) for c in checks)))
    Gauge(
        "champion_scheduled_evaluation_last_run_timestamp_seconds",
        "When the last scheduled evaluation ran.",
        ["model"],
        registry=registry,
    ).labels(model).set(at if at is not None else time.time())
    score = Gauge(
        "champion_scheduled_evaluation_score",
        "Mean of each metric in the last scheduled evaluation.",
        ["model", "metric"],
        registry=registry,
    )
    for metric, value in sorted(scores.items()):
        if _finite(value):
            score.labels(model, metric).set(float(value))
    return registry


class ExportError(ChampionError):
    """The Pushgateway refused or could not be reached (the run's own outcome stands)."""


def export(
    registry: CollectorRegistry, *, model: str, kind: str, pushgateway_url: str = "", textfile: str | Path = ""
) -> list[str]:
    """Push to ``pushgateway_url`` (grouped by job, kind and model, so runs of one model replace each other's series)
    and/or write ``textfile``; where it went."""
    written = []
    if textfile:
        path = Path(textfile)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_to_textfile(str(path), registry)
        written.append(str(path))
    if pushgateway_url:
        try:
            push_to_gateway(
                pushgateway_url, job=JOB, registry=registry, grouping_key={"kind": kind, "model": model}, timeout=10
            )
        except OSError as exc:  # urllib's URLError/HTTPError
            raise ExportError(
                f"the Pushgateway at {pushgateway_url} did not take the run's metrics: {exc}",
                "check pushgateway_url (e.g. http://prometheus-pushgateway.monitoring:9091), or leave it empty.",
            ) from exc
        written.append(pushgateway_url)
    return written
