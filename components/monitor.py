"""monitor: judge the live champion's scheduled evaluation against its previous one. Never promotes.

The work is done by ``registry.monitoring`` (its docstring has the details).
"""

from typing import List, NamedTuple

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components import Step, cpu_step

STEP = Step(title="Compare with the previous evaluation", version="3.1.0", cacheable=False)


@cpu_step
def monitor_op(
    mlflow_tracking_uri: str,
    registered_model_name: str,
    champion_version: str,
    champion_model_digest: str,
    bundles: List[str],
    gate_config: str,
    evaluator_config: str,
    webhook_url: str,
    pipeline_run: str,
    pushgateway_url: str,
    shards: int,
    scores: Input[List[Dataset]],
    judge_reliability: str,
    eval_metrics: Input[List[Metrics]],
    drift_metrics: Input[Metrics],
    report: Output[Markdown],
    metrics: Output[Metrics],
) -> NamedTuple("MonitorOutputs", [("status", str)]):
    """monitor v3.1.0: the gate engine on the champion's scheduled evaluation (the run's one scored bundle) against its policy and its previous evaluation; alert (fail) on a failed check; never promote."""
    from champion.step_process import begin_step

    begin_step()
    import json
    from collections import namedtuple
    from dataclasses import asdict

    from champion.artifacts import persist_metadata
    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl
    from evaluators.scores import merge_scored
    from registry.monitoring import ChampionRegressed, monitor_champion, monitor_report

    (merged,) = merge_scored(  # the champion, the run's one bundle, its parts put back together
        bundles,
        [read_jsonl(part.path) for part in scores],
        [{k: v for k, v in part.metadata.items() if k != "display_name"} for part in eval_metrics],
        shards=shards,
    )
    scored = Bundle.model_validate_json(merged.bundle)
    if scored.model_digest != champion_model_digest:
        from champion.pinning import PinMismatch

        raise PinMismatch(
            f"the weights evaluated for champion version {champion_version} (model digest {scored.model_digest[:12]}…) are not the registered ones ({champion_model_digest[:12]}…).",
            "restore the registered weights at the champion's weights source; nothing was evaluated against its history.",
        )

    def numbers(artifact) -> dict:
        return {
            k: float(v) for k, v in artifact.metadata.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
        }

    result = monitor_champion(
        tracking_uri=mlflow_tracking_uri,
        registered_model_name=registered_model_name,
        champion_version=champion_version,
        bundle_id=scored.id,
        rows=merged.table,
        metrics={k: v for k, v in merged.metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)},
        drift=numbers(drift_metrics),
        policy_ref=gate_config,
        evaluator_config_ref=evaluator_config,
        judge_reliability=json.loads(judge_reliability or "{}"),
        webhook_url=webhook_url,
        pipeline_run=pipeline_run,
    )
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(monitor_report(result, champion_version))
    if pushgateway_url:  # the evaluation is recorded in MLflow already; a monitoring outage only warns
        from registry.run_metrics import ExportError, export, monitor_metrics

        try:
            export(
                monitor_metrics(
                    registered_model_name, healthy=result.healthy, checks=result.checks, scores=merged.metrics
                ),
                model=registered_model_name,
                kind="scheduled-evaluation",
                pushgateway_url=pushgateway_url,
            )
        except ExportError as exc:
            print(f"monitor: WARNING: {exc}")
    metrics.log_metric("champion_healthy", 1.0 if result.healthy else 0.0)
    metrics.log_metric("failed_checks", float(sum(not c["passed"] for c in result.checks)))
    print(
        f"monitor: {'healthy' if result.healthy else 'ALERT'}: {'; '.join(result.reasons)} (webhook: {result.webhook})"
    )
    if not result.healthy:
        raise ChampionRegressed(
            f"champion version {champion_version} failed its scheduled evaluation: " + "; ".join(result.reasons),
            f"see the monitor report; the MLflow run {result.run_id} holds the scores. Nothing was promoted.",
        )
    persist_metadata(metrics)
    return namedtuple("MonitorOutputs", ["status"])(json.dumps(asdict(result), sort_keys=True))
