"""The scheduled evaluation: the live champion on the latest evaluation data. It never promotes.

    pin_inputs ─► preprocess_data ─┐
    resolve_champion ──────────────┴─► If champion: fetch · fine_tune (pass-through) · generate · evaluate ─► drift ─► monitor (alert = failed run)
                                       Else: no_champion (fails: nothing to evaluate)

`champion schedule` makes it a recurring run on Kubeflow; `champion monitor` runs it locally.
"""

from kfp import dsl

from champion.parameters import ScheduledEvalParameters
from components import drift as drift_step
from components import monitor, no_champion, resolve_champion
from pipelines.wiring import configure, judge_check, pin_and_prepare, score_bundles, typed_pipeline

PIPELINE_NAME = "champion-scheduled-eval"


@dsl.pipeline(
    name=PIPELINE_NAME,
    description="Evaluate the live champion on the latest evaluation data, compare with its previous evaluation, alert on regressions; never promotes (champion).",
)
@typed_pipeline(ScheduledEvalParameters)
def scheduled_eval_pipeline(p):
    """Evaluate the live champion on the latest data and alert when it regressed."""
    pins, data_task = pin_and_prepare(p, model_source="", prompt="")
    champion_task = configure(
        resolve_champion.resolve_champion_op(
            mlflow_tracking_uri=p.mlflow_tracking_uri,
            registered_model_name=p.registered_model_name,
            allow_bootstrap=False,
            audit_log="",
        )
    )
    with dsl.If(champion_task.outputs["has_champion"] == True):  # noqa: E712
        scored = score_bundles(p, pins, data_task, champion_task)  # one bundle: the champion
        drift_task = configure(
            drift_step.drift_op(
                generations=scored.generations,
                shards=p.shards,
                drift_reference=p.drift_reference,
                drift_pin=pins.outputs["drift_pin"],
                cache_root=p.cache_root,
            )
        )
        configure(
            monitor.monitor_op(
                mlflow_tracking_uri=p.mlflow_tracking_uri,
                registered_model_name=p.registered_model_name,
                champion_version=champion_task.outputs["champion_version"],
                champion_model_digest=champion_task.outputs["champion_model_digest"],
                bundles=scored.bundles,
                gate_config=pins.outputs["gate_config"],
                evaluator_config=pins.outputs["evaluator_config"],
                webhook_url=p.webhook_url,
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                pushgateway_url=p.pushgateway_url,
                shards=p.shards,
                scores=scored.scores,
                judge_reliability=judge_check(p, pins).outputs["judge_reliability"],
                eval_metrics=scored.metrics,
                drift_metrics=drift_task.outputs["metrics"],
            )
        )
    with dsl.Else():
        configure(
            no_champion.no_champion_op(
                registered_model_name=p.registered_model_name, mlflow_tracking_uri=p.mlflow_tracking_uri
            )
        )
