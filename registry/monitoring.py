"""monitor: judge the live champion's scheduled evaluation against its previous one. Never promotes.

Each scheduled run evaluates the champion on the latest evaluation data and hands the per-example
scores to the same gate engine as the promotion gate (``evaluators.gate.decide``): the policy's floors,
and a comparison with the previous scheduled evaluation of the same champion version, paired when the
examples match, a two-sample interval (labelled so) when the evaluation set changed. A failed check
(worse, or inconclusive) is an alert: it is recorded in MLflow (experiment ``champion-monitoring``,
with the score table for the next comparison), posted to an optional webhook (Slack-compatible
``{"text": ...}``) and fails the run with the reasons, which is the alert Kubeflow shows.
"""

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from champion.errors import ChampionError, ConfigError
from champion.jsonl import read_jsonl
from evaluators.catalog import SERVED_PREFERENCE
from evaluators.config import load_evaluator_config
from evaluators.gate import Decision, decide
from evaluators.policy import check_against, load_policy
from registry.registry import append_audit, connect, default_audit_log

MONITOR_EXPERIMENT = "champion-monitoring"
SCORES_ARTIFACT = "monitor/scores.jsonl"


class ChampionRegressed(ChampionError):
    """The live champion fails its policy on the latest data, or regressed since its last evaluation."""


@dataclass
class MonitorResult:
    healthy: bool
    reasons: list[str]
    checks: list[dict]
    mode: str = "bootstrap"
    previous_run: str | None = None
    run_id: str = ""
    webhook: str = "not configured"
    drift: dict = field(default_factory=dict)
    compared_with: str = ""  # what the checks compared against, in words


def monitoring_decision(
    rows: list[dict], previous_rows: list[dict] | None, policy, metrics: dict, judge_reliability: dict
):
    """The engine's verdict on the champion now against its previous evaluation (or floors only)."""

    superior = [name for name, rule in policy.metrics.items() if rule.require_superiority]
    if superior:
        raise ConfigError(
            f"the monitoring policy {policy.name} requires superiority of {superior}: a champion compared with its own earlier evaluation can never be superior to itself.",
            "schedule the evaluation with a policy whose metrics use margins (gate_config), not require_superiority.",
        )
    return decide(
        rows,
        policy,
        champion_table=previous_rows,
        metrics=metrics,
        judge_reliable=judge_reliability.get("reliable") is True,
        judge_reasons=judge_reliability.get("reasons", []),
        allow_unpaired=True,
    )


def served_baseline(rows: list[dict], policy) -> list[dict]:
    """The other side of each logged pair, for a reference-free evaluation: the evaluated bundle's own answer
    scores the complement of the served answer's preference. Deciding served against it is the paired
    non-inferiority test the shadow gate runs: are users served answers as good as the bundle that was
    evaluated and promoted?"""

    compared = [name for name, rule in policy.metrics.items() if rule.compare and name != SERVED_PREFERENCE.name]
    if compared:
        raise ConfigError(
            f"the monitoring policy {policy.name} compares {compared} on logged traffic, where the only pairs are "
            f"served vs. the bundle's own answer ({SERVED_PREFERENCE.name}).",
            "set `compare: false` on those metrics (floors still apply), or use the packaged `traffic` policy.",
        )
    return [{"id": row["id"], SERVED_PREFERENCE.name: 1.0 - row[SERVED_PREFERENCE.name]} for row in rows]


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
    rows: list[dict],
    metrics: dict[str, float],
    drift: dict[str, float],
    policy_ref: str,
    evaluator_config_ref: str = "default",
    judge_reliability: dict | None = None,
    webhook_url: str = "",
    pipeline_run: str = "",
) -> MonitorResult:
    policy = load_policy(policy_ref)
    config = load_evaluator_config(evaluator_config_ref)
    catalog = config.metric_catalog()
    check_against(policy, catalog, policy_ref)
    mlflow, client, experiment_id = connect(tracking_uri, experiment=MONITOR_EXPERIMENT)
    previous_run, previous_rows = _previous_evaluation(client, experiment_id, registered_model_name, champion_version)
    # Logged traffic: served answers against the evaluated bundle's own on the same requests (the samples of
    # two scheduled runs are different requests, so the pairs are within a run).
    baseline = served_baseline(rows, policy) if config.reference_free else previous_rows
    decision = monitoring_decision(rows, baseline, policy, catalog, judge_reliability or {})
    checks = [c.model_dump(mode="json") for c in decision.checks]
    healthy = decision.passed
    reasons = _reasons(decision, config.reference_free, earlier=previous_run is not None)
    compared_with = _compared_with(decision, config.reference_free, previous_run)
    run_id = _record_run(
        mlflow,
        experiment_id,
        tags=_run_tags(decision, registered_model_name, champion_version, bundle_id, pipeline_run),
        metrics=metrics,
        checks={
            "checks": checks,
            "mode": decision.mode,
            "multiplicity": decision.multiplicity,
            "drift": drift,
            "previous_run": previous_run,
            "compared_with": compared_with,
        },
        rows=rows,
    )
    result = MonitorResult(
        healthy, reasons, checks, decision.mode, previous_run, run_id, drift=drift, compared_with=compared_with
    )
    append_audit(
        default_audit_log(tracking_uri),
        {
            "event": "scheduled_evaluation",
            "bundle_id": bundle_id,
            "model": registered_model_name,
            "version": champion_version,
            "status": "healthy" if healthy else "alert",
            "gate": decision.gate,
            "reasons": reasons,
            "pipeline_run": pipeline_run,
        },
    )
    if not healthy and webhook_url:
        result.webhook = _alert(
            webhook_url, registered_model_name, champion_version, bundle_id, reasons, pipeline_run, drift
        )
    return result


def _reasons(decision: Decision, reference_free: bool, *, earlier: bool) -> list[str]:
    """The engine's reasons for an alert; for a healthy champion, what it passed against."""
    if not decision.passed:
        return decision.reasons
    if reference_free:
        against = f": served answers against the evaluated bundle's own on logged requests ({decision.mode})"
    elif earlier:
        against = f" against the previous scheduled evaluation ({decision.mode})"
    else:
        against = " (first scheduled evaluation of this champion: floors only)"
    return ["every check passed" + against]


def _compared_with(decision: Decision, reference_free: bool, previous_run: str | None) -> str:
    """What the checks compared against, in words."""
    if reference_free:
        return f"the evaluated bundle's own answers to the same logged requests ({decision.mode})"
    if previous_run:
        return f"MLflow run {previous_run} ({decision.mode})"
    return "no previous scheduled evaluation (floors only)"


def _run_tags(decision: Decision, model: str, version: str, bundle_id: str, pipeline_run: str) -> dict[str, str]:
    return {
        "champion.version": version,
        "champion.model": model,
        "champion.evaluated_bundle_id": bundle_id,
        "champion.monitor_status": "healthy" if decision.passed else "alert",
        "champion.gate": decision.gate,
        "champion.pipeline_run": pipeline_run or "unknown",
        "champion.git_commit": os.environ.get("CHAMPION_GIT_COMMIT", "unknown"),
    }


def _previous_evaluation(client, experiment_id: str, model: str, version: str) -> tuple[str | None, list[dict] | None]:
    """The latest earlier scheduled evaluation of this champion version: its MLflow run id and score rows."""
    earlier = client.search_runs(
        [experiment_id],
        filter_string=f"tags.`champion.version` = '{version}' and tags.`champion.model` = '{model}'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    if not earlier:
        return None, None
    run_id = earlier[0].info.run_id
    with tempfile.TemporaryDirectory() as folder:
        return run_id, read_jsonl(client.download_artifacts(run_id, SCORES_ARTIFACT, folder))


def _record_run(mlflow, experiment_id: str, *, tags: dict, metrics: dict, checks: dict, rows: list[dict]) -> str:
    """This evaluation as an MLflow run: tags, finite metrics, the checks, and the score rows the next run compares with."""
    run_name = f"{tags['champion.model']} v{tags['champion.version']} scheduled evaluation"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(tags)
        mlflow.log_metrics({k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)})
        mlflow.log_dict(checks, "monitor/checks.json")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / Path(SCORES_ARTIFACT).name
            path.write_text("".join(json.dumps(row, sort_keys=True) + "\n" for row in rows), encoding="utf-8")
            mlflow.log_artifact(str(path), artifact_path=str(Path(SCORES_ARTIFACT).parent))
        return run.info.run_id


def _alert(
    webhook_url: str, model: str, version: str, bundle_id: str, reasons: list[str], pipeline_run: str, drift: dict
) -> str:
    text = f"champion: {model} v{version} (bundle {bundle_id[:12]}) failed its scheduled evaluation: " + "; ".join(
        reasons
    )
    return post_webhook(
        webhook_url,
        {
            "text": text,
            "model": model,
            "version": version,
            "bundle_id": bundle_id,
            "reasons": reasons,
            "pipeline_run": pipeline_run,
            "drift": drift,
        },
    )


def monitor_report(result: MonitorResult, champion_version: str) -> str:
    lines = [
        f"# Scheduled evaluation of champion version {champion_version}: {'healthy' if result.healthy else 'ALERT'}",
        "",
        "**Why:** " + "; ".join(result.reasons),
        "",
        f"Compared with: {result.compared_with}. Webhook: {result.webhook}.",
        "",
        "| metric | slice | test | result | detail |",
        "|---|---|---|---|---|",
    ]
    for check in result.checks:
        lines.append(
            f"| {check['metric']} | {check.get('slice') or 'all'} | {check['test']} | {check['status']} | {check['reason']} |"
        )
    if result.drift:
        lines += [
            "",
            "Drift against the reference: " + ", ".join(f"{k} {v:.3f}" for k, v in sorted(result.drift.items())),
        ]
    lines += ["", "This run never promotes or deploys anything."]
    return "\n".join(lines) + "\n"
