"""The promotion pipeline: evaluate a challenger bundle against the live champion, in the same run.

    preprocess_data ─┬─► batch_generate (challenger) ─► evaluate ─┬─► drift
    fetch_weights ───┘                                             │
    resolve_champion ─► If champion: fetch · generate · evaluate ──┴─► gate (paired)  ┐
                        Else:                                          gate (floors)   ┴─► register ─► If approved and promote: deploy

deploy rolls the bundle out (canary → smoke test → promote or roll back) and only then moves the
MLflow champion alias.

It only wires steps; the work is in components/. GPU settings (accelerator, node selector,
tolerations) come from parameters: they are in the compiled IR for a cluster and have no effect
under kfp.local.
"""

from typing import NamedTuple

from kfp import dsl
from kfp.dsl import HTML, Dataset, Markdown, Metrics

from components import CPU_IMAGE, deploy, drift, gate, preprocess_data, register, resolve_champion
from pipelines.wiring import WEIGHTS_MOUNT, WEIGHTS_PVC, configure, evaluate_bundle

PIPELINE_NAME = "champion-promotion"

PromotionOutputs = NamedTuple(
    "PromotionOutputs",
    [
        ("decision", str),
        ("bundle", str),
        ("model_version", str),
        ("scores", Dataset),
        ("eval_metrics", Metrics),
        ("judge_report", Markdown),
        ("drift_report", HTML),
        ("drift_metrics", Metrics),
        ("deployment", str),
        ("promoted", bool),
    ],
)


@dsl.pipeline(name=PIPELINE_NAME, description="Evaluation-gated promotion of an LLM model+prompt bundle against the live champion (champion).")
def promotion_pipeline(
    data_source: str = "demo",
    eval_fraction: float = 1.0,
    seed: int = 0,
    limit: int = 0,
    model_source: str = "smollm2",
    weights_cache: str = WEIGHTS_MOUNT if WEIGHTS_PVC else "",
    trust_remote_code: bool = False,
    hf_token_secret: str = "hf-token",
    cache_root: str = "",
    fine_tune_steps: int = 0,
    fine_tune_learning_rate: float = 2e-4,
    lora_rank: int = 8,
    merge_adapter: bool = True,
    fine_tune_gpu_count: int = 0,
    prompt: str = "qa-concise",
    generation_backend: str = "transformers",
    batch_size: int = 16,
    context_overflow: str = "fail",
    evaluator_config: str = "default",
    drift_reference: str = "demo",
    gate_config: str = "default",
    mlflow_tracking_uri: str = "http://mlflow.mlflow.svc.cluster.local:5000",
    registered_model_name: str = "champion-qa",
    audit_log: str = "",
    service_name: str = "champion-qa",
    namespace: str = "kubeflow-user-example-com",
    storage_uri: str = "pvc://champion-models/{model_digest}",
    serving_runtime: str = "huggingface-vllm",
    deployment_mode: str = "Serverless",
    deploy_target: str = "kserve",
    canary_traffic_percent: int = 10,
    ready_timeout_s: float = 900.0,
    smoke_examples: int = 5,
    smoke_min_token_f1: float = 0.1,
    transformer_image: str = CPU_IMAGE,
    service_account: str = "",
    promote: bool = True,
    allow_bootstrap: bool = False,
    fail_on_reject: bool = False,
    accelerator_type: str = "nvidia.com/gpu",
    accelerator_count: int = 1,
    gpu_node_selector: dict = {},
    gpu_tolerations: list = [],
) -> PromotionOutputs:
    settings = dict(
        weights_cache=weights_cache,
        trust_remote_code=trust_remote_code,
        generation_backend=generation_backend,
        batch_size=batch_size,
        evaluator_config=evaluator_config,
        gpu=dict(accelerator_type=accelerator_type, accelerator_count=accelerator_count, node_selector=gpu_node_selector, tolerations=gpu_tolerations),
        hf_token_secret=hf_token_secret,
        cache_root=cache_root,
        context_overflow=context_overflow,
    )
    fine_tuning = dict(steps=fine_tune_steps, learning_rate=fine_tune_learning_rate, lora_rank=lora_rank, merge_adapter=merge_adapter, seed=seed, gpu_count=fine_tune_gpu_count)
    data_task = configure(preprocess_data.preprocess_data_op(data_source=data_source, eval_fraction=eval_fraction, seed=seed, limit=limit))
    champion_task = configure(resolve_champion.resolve_champion_op(mlflow_tracking_uri=mlflow_tracking_uri, registered_model_name=registered_model_name, allow_bootstrap=allow_bootstrap, audit_log=audit_log,
                                                                     prompt=prompt, gate_config=gate_config, evaluator_config=evaluator_config))

    challenger = evaluate_bundle(data_task, model_source, prompt, check_judge=True, fine_tuning=fine_tuning, after=champion_task, **settings)
    drift_task = configure(drift.drift_op(generations=challenger.generate.outputs["generations"], drift_reference=drift_reference))

    gate_inputs = dict(
        scores=challenger.evaluate.outputs["scores"],
        bundle=challenger.evaluate.outputs["bundle"],
        gate_config=gate_config,
        evaluator_config=evaluator_config,
        judge_reliability=challenger.evaluate.outputs["judge_reliability"],
    )
    with dsl.If(champion_task.outputs["has_champion"] == True):  # noqa: E712 (compiled to a CEL condition)
        champion = evaluate_bundle(
            data_task, champion_task.outputs["champion_model_source"], champion_task.outputs["champion_prompt"], check_judge=False, **settings
        )
        paired_gate_task = configure(
            gate.gate_op(
                **gate_inputs,
                champion_scores=champion.evaluate.outputs["scores"],
                champion_bundle=champion.evaluate.outputs["bundle"],
                champion_version=champion_task.outputs["champion_version"],
            )
        )
    with dsl.Else():
        bootstrap_gate_task = configure(gate.gate_op(**gate_inputs))
    decision = dsl.OneOf(paired_gate_task.outputs["decision_json"], bootstrap_gate_task.outputs["decision_json"])

    register_task = configure(
        register.register_op(
            bundle=challenger.evaluate.outputs["bundle"],
            prompt=prompt,
            model_source=challenger.weights_source,
            mlflow_tracking_uri=mlflow_tracking_uri,
            registered_model_name=registered_model_name,
            audit_log=audit_log,
            promote=promote,
            decision=decision,
            expected_champion=champion_task.outputs["champion_version"],
            pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            scores=challenger.evaluate.outputs["scores"],
            eval_metrics=challenger.evaluate.outputs["metrics"],
        )
    )
    with dsl.If(register_task.outputs["release"] == True):  # noqa: E712
        deploy_task = configure(
            deploy.deploy_op(
                bundle=challenger.evaluate.outputs["bundle"],
                prompt=prompt,
                eval_set=data_task.outputs["eval_set"],
                model_version=register_task.outputs["model_version"],
                prompt_version=register_task.outputs["prompt_version"],
                registered_model_name=registered_model_name,
                mlflow_tracking_uri=mlflow_tracking_uri,
                expected_champion=champion_task.outputs["champion_version"],
                audit_log=audit_log,
                pipeline_run=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                service_name=service_name,
                namespace=namespace,
                storage_uri=storage_uri,
                serving_runtime=serving_runtime,
                deployment_mode=deployment_mode,
                deploy_target=deploy_target,
                canary_traffic_percent=canary_traffic_percent,
                ready_timeout_s=ready_timeout_s,
                smoke_examples=smoke_examples,
                smoke_min_token_f1=smoke_min_token_f1,
                transformer_image=transformer_image,
                service_account=service_account,
            )
        )
    with dsl.Else():
        skip_task = configure(deploy.skip_deploy_op(gate_passed=register_task.outputs["approved"], fail_on_reject=fail_on_reject, decision=decision))

    return PromotionOutputs(
        decision=decision,
        bundle=challenger.evaluate.outputs["bundle"],
        model_version=register_task.outputs["model_version"],
        scores=challenger.evaluate.outputs["scores"],
        eval_metrics=challenger.evaluate.outputs["metrics"],
        judge_report=challenger.evaluate.outputs["judge_report"],
        drift_report=drift_task.outputs["report"],
        drift_metrics=drift_task.outputs["metrics"],
        deployment=dsl.OneOf(deploy_task.outputs["deployment"], skip_task.outputs["deployment"]),
        promoted=dsl.OneOf(deploy_task.outputs["promoted"], skip_task.outputs["promoted"]),
    )
