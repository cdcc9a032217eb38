"""The scheduled evaluation: the live champion on the latest evaluation data. It never promotes.

    preprocess_data ─┐
    resolve_champion ─► If champion: fetch · generate · evaluate ─► drift ─► monitor (alert = failed run)
                        Else: no_champion (fails: nothing to evaluate)

`champion schedule` makes it a recurring run on Kubeflow; `champion monitor` runs it locally.
"""

from kfp import dsl

from components import monitor, preprocess_data, resolve_champion
from components import drift as drift_step
from pipelines.wiring import WEIGHTS_MOUNT, WEIGHTS_PVC, configure, evaluate_bundle

PIPELINE_NAME = "champion-scheduled-eval"


@dsl.pipeline(name=PIPELINE_NAME, description="Evaluate the live champion on the latest evaluation data, compare with its previous evaluation, alert on regressions; never promotes (champion).")
def scheduled_eval_pipeline(
    data_source: str = "demo",
    limit: int = 0,
    weights_cache: str = WEIGHTS_MOUNT if WEIGHTS_PVC else "",
    trust_remote_code: bool = False,
    hf_token_secret: str = "hf-token",
    cache_root: str = "",
    generation_backend: str = "transformers",
    batch_size: int = 16,
    context_overflow: str = "fail",
    evaluator_config: str = "default",
    drift_reference: str = "demo",
    gate_config: str = "default",
    mlflow_tracking_uri: str = "http://mlflow.mlflow.svc.cluster.local:5000",
    registered_model_name: str = "champion-qa",
    webhook_url: str = "",
    accelerator_type: str = "nvidia.com/gpu",
    accelerator_count: int = 1,
    gpu_node_selector: dict = {},
    gpu_tolerations: list = [],
):
    data_task = configure(preprocess_data.preprocess_data_op(data_source=data_source, eval_fraction=1.0, seed=0, limit=limit))
    champion_task = configure(resolve_champion.resolve_champion_op(mlflow_tracking_uri=mlflow_tracking_uri, registered_model_name=registered_model_name, allow_bootstrap=False, audit_log="",
                                                                     prompt="", gate_config=gate_config, evaluator_config=evaluator_config))
    with dsl.If(champion_task.outputs["has_champion"] == True):  # noqa: E712
        champion = evaluate_bundle(
            data_task, champion_task.outputs["champion_model_source"], champion_task.outputs["champion_prompt"], check_judge=True,
            weights_cache=weights_cache, trust_remote_code=trust_remote_code, generation_backend=generation_backend, batch_size=batch_size, evaluator_config=evaluator_config,
            gpu=dict(accelerator_type=accelerator_type, accelerator_count=accelerator_count, node_selector=gpu_node_selector, tolerations=gpu_tolerations),
            hf_token_secret=hf_token_secret,
            cache_root=cache_root,
            context_overflow=context_overflow,
        )
        drift_task = configure(drift_step.drift_op(generations=champion.generate.outputs["generations"], drift_reference=drift_reference))
        configure(
            monitor.monitor_op(
                mlflow_tracking_uri=mlflow_tracking_uri,
                registered_model_name=registered_model_name,
                champion_version=champion_task.outputs["champion_version"],
                bundle=champion.evaluate.outputs["bundle"],
                gate_config=gate_config,
                evaluator_config=evaluator_config,
                webhook_url=webhook_url,
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                scores=champion.evaluate.outputs["scores"],
                judge_reliability=champion.evaluate.outputs["judge_reliability"],
                eval_metrics=champion.evaluate.outputs["metrics"],
                drift_metrics=drift_task.outputs["metrics"],
            )
        )
    with dsl.Else():
        configure(monitor.no_champion_op(registered_model_name=registered_model_name, mlflow_tracking_uri=mlflow_tracking_uri))
