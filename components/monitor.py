"""monitor: judge the live champion's scheduled evaluation against its previous one. Never promotes.

Each scheduled run evaluates the champion on the latest evaluation data. This step compares the
aggregate scores with the gate policy's floors and with the previous scheduled evaluation of the same
champion version (a drop larger than the policy's margin is a regression), records the evaluation in
MLflow (experiment ``champion-monitoring``) for the next comparison, and on any failure posts to an
optional webhook (Slack-compatible ``{"text": ...}``) and fails the run with the reasons, which is
the alert Kubeflow shows.
"""

import math
import os
from dataclasses import dataclass, field
from typing import NamedTuple

from kfp.dsl import Input, Markdown, Metrics, Output

from champion.errors import ChampionError
from components import cpu_step

VERSION = "1.0.0"
MONITOR_EXPERIMENT = "champion-monitoring"


class ChampionRegressed(ChampionError):
    """The live champion fails its policy on the latest data, or regressed since its last evaluation."""


@dataclass
class MonitorResult:
    healthy: bool
    reasons: list[str]
    checks: list[dict]
    previous_run: str | None = None
    run_id: str = ""
    webhook: str = "not configured"
    drift: dict = field(default_factory=dict)


def check_metrics(current: dict[str, float], previous: dict[str, float] | None, policy) -> list[dict]:
    """Per policy metric: the floor, and no drop beyond the margin since the previous evaluation."""
    checks = []
    judge_reliable = current.get("judge_reliable", 0.0) >= 1.0
    for metric, rule in policy.metrics.items():
        value = current.get(metric)
        sign = 1.0 if rule.direction == "higher" else -1.0
        excluded = metric.startswith("judge_") and not judge_reliable
        if value is None or not math.isfinite(value):
            checks.append({"metric": metric, "test": "present", "passed": excluded, "excluded": excluded, "reason": f"{metric} is missing or not a number" + (" (judge excluded: unreliable)" if excluded else "")})
            continue
        if rule.floor is not None:
            ok = sign * (value - rule.floor) >= 0
            checks.append({"metric": metric, "test": "floor", "passed": ok or excluded, "excluded": excluded, "value": value, "threshold": rule.floor,
                           "reason": f"{metric} {value:.3f} {'meets' if ok else 'misses'} the floor {rule.floor:.3f}" + (" (judge excluded: unreliable)" if excluded else "")})
        if previous is not None and metric in previous and math.isfinite(previous[metric]):
            change = sign * (value - previous[metric])
            ok = change >= -rule.margin
            checks.append({"metric": metric, "test": "regression", "passed": ok or excluded, "excluded": excluded, "value": value, "previous": previous[metric], "threshold": rule.margin,
                           "reason": f"{metric} {previous[metric]:.3f} → {value:.3f} ({'within' if ok else 'beyond'} the margin {rule.margin:.3f})" + (" (judge excluded: unreliable)" if excluded else "")})
    return checks


def post_webhook(url: str, payload: dict, timeout_s: float = 10.0) -> str:
    import requests

    try:
        response = requests.post(url, json=payload, timeout=timeout_s)
    except requests.RequestException as exc:
        return f"failed: {type(exc).__name__}"
    return "sent" if response.status_code < 300 else f"failed: HTTP {response.status_code}"


def monitor_champion(
    *,
    tracking_uri: str,
    registered_model_name: str,
    champion_version: str,
    bundle_id: str,
    metrics: dict[str, float],
    drift: dict[str, float],
    policy_ref: str,
    webhook_url: str = "",
    pipeline_run: str = "",
) -> MonitorResult:
    from evaluators.gate import load_policy
    from serving.registry import append_audit, connect, default_audit_log

    policy = load_policy(policy_ref)
    mlflow, client, experiment_id = connect(tracking_uri, experiment=MONITOR_EXPERIMENT)
    earlier = client.search_runs([experiment_id], filter_string=f"tags.`champion.version` = '{champion_version}' and tags.`champion.model` = '{registered_model_name}'", order_by=["attributes.start_time DESC"], max_results=1)
    previous = dict(earlier[0].data.metrics) if earlier else None
    checks = check_metrics(metrics, previous, policy)
    failed = [c for c in checks if not c["passed"]]
    reasons = [c["reason"] for c in failed] or ["every policy metric meets its floor" + (" and held within its margin since the previous evaluation" if previous else " (first scheduled evaluation of this champion: floors only)")]
    with mlflow.start_run(experiment_id=experiment_id, run_name=f"{registered_model_name} v{champion_version} scheduled evaluation") as run:
        mlflow.set_tags({"champion.version": champion_version, "champion.model": registered_model_name, "champion.evaluated_bundle_id": bundle_id, "champion.monitor_status": "alert" if failed else "healthy",
                         "champion.pipeline_run": pipeline_run or "unknown", "champion.git_commit": os.environ.get("CHAMPION_GIT_COMMIT", "unknown")})
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        mlflow.log_dict({"checks": checks, "drift": drift, "previous_run": earlier[0].info.run_id if earlier else None}, "monitor/checks.json")
        run_id = run.info.run_id
    result = MonitorResult(not failed, reasons, checks, earlier[0].info.run_id if earlier else None, run_id, drift=drift)
    append_audit(default_audit_log(tracking_uri), {"event": "scheduled_evaluation", "bundle_id": bundle_id, "model": registered_model_name, "version": champion_version, "status": "alert" if failed else "healthy", "reasons": reasons, "pipeline_run": pipeline_run})
    if failed and webhook_url:
        text = f"champion: {registered_model_name} v{champion_version} (bundle {bundle_id[:12]}) failed its scheduled evaluation: " + "; ".join(reasons)
        result.webhook = post_webhook(webhook_url, {"text": text, "model": registered_model_name, "version": champion_version, "bundle_id": bundle_id, "reasons": reasons, "pipeline_run": pipeline_run, "drift": drift})
    return result


def monitor_report(result: MonitorResult, champion_version: str) -> str:
    lines = [f"# Scheduled evaluation of champion version {champion_version}: {'healthy' if result.healthy else 'ALERT'}", "", "**Why:** " + "; ".join(result.reasons), "",
             f"Compared with: {'MLflow run ' + result.previous_run if result.previous_run else 'no previous scheduled evaluation (floors only)'}. Webhook: {result.webhook}.", "",
             "| metric | test | result | detail |", "|---|---|---|---|"]
    for check in result.checks:
        verdict = "excluded" if check.get("excluded") else ("pass" if check["passed"] else "FAIL")
        lines.append(f"| {check['metric']} | {check['test']} | {verdict} | {check['reason']} |")
    if result.drift:
        lines += ["", "Drift against the reference: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.drift.items()))]
    lines += ["", "This run never promotes or deploys anything."]
    return "\n".join(lines) + "\n"


@cpu_step
def monitor_op(
    mlflow_tracking_uri: str,
    registered_model_name: str,
    champion_version: str,
    bundle: str,
    gate_config: str,
    webhook_url: str,
    pipeline_run: str,
    eval_metrics: Input[Metrics],
    drift_metrics: Input[Metrics],
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> NamedTuple("MonitorOutputs", [("status", str)]):
    """monitor v1.0.0: compare the champion's scheduled evaluation with its policy and its previous evaluation; alert (fail) on a regression; never promote."""
    import json
    from collections import namedtuple
    from dataclasses import asdict

    from champion.bundle import Bundle
    from components.monitor import ChampionRegressed, monitor_champion, monitor_report

    numbers = lambda artifact: {k: float(v) for k, v in artifact.metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}  # noqa: E731
    result = monitor_champion(
        tracking_uri=mlflow_tracking_uri, registered_model_name=registered_model_name, champion_version=champion_version, bundle_id=Bundle.model_validate_json(bundle).id,
        metrics=numbers(eval_metrics), drift=numbers(drift_metrics), policy_ref=gate_config, webhook_url=webhook_url, pipeline_run=pipeline_run,
    )
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(monitor_report(result, champion_version))
    metrics.log_metric("champion_healthy", 1.0 if result.healthy else 0.0)
    metrics.log_metric("failed_checks", float(sum(not c["passed"] for c in result.checks)))
    print(f"monitor: {'healthy' if result.healthy else 'ALERT'}: {'; '.join(result.reasons)} (webhook: {result.webhook})")
    if not result.healthy:
        raise ChampionRegressed(f"champion version {champion_version} failed its scheduled evaluation: " + "; ".join(result.reasons), f"see the monitor report; the MLflow run {result.run_id} holds the scores. Nothing was promoted.")
    return namedtuple("MonitorOutputs", ["status"])(json.dumps(asdict(result), sort_keys=True))


@cpu_step
def no_champion_op(registered_model_name: str, mlflow_tracking_uri: str):
    """no_champion v1.0.0: fail the scheduled evaluation: nothing has been promoted, so there is nothing to evaluate."""
    from serving.registry import CHAMPION_ALIAS, NoChampion

    raise NoChampion(f"{registered_model_name} has no '{CHAMPION_ALIAS}' alias in {mlflow_tracking_uri}: nothing is live, so there is nothing to evaluate.", "promote a bundle first (champion run, or the promotion pipeline), then schedule its evaluation.")
