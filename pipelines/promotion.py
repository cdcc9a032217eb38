"""The promotion pipeline: preprocess → fetch weights → generate → evaluate → gate → register → (if passed) deploy.

It only wires steps; the work is in components/. GPU settings (accelerator, node selector,
tolerations) come from parameters: they are in the compiled IR for a cluster and have no effect
under kfp.local.
"""

from typing import NamedTuple

from kfp import dsl, kubernetes
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics

from components import batch_generate, deploy, drift, evaluate, fetch_weights, gate, preprocess_data, register

PIPELINE_NAME = "champion-promotion"

# KFP's step cache keys on parameters and artifact ids, not on what a path or URI currently holds.
# Steps that read mutable sources (a data path, a model URI) or have side effects (MLflow, KServe)
# must always run; pure functions of their inputs may be cached.
_CACHE_SAFE = {"batch-generate-op", "evaluate-op", "gate-op"}  # drift-op reads a mutable reference URI
_VERSIONS = {
    "preprocess-data-op": preprocess_data.VERSION,
    "fetch-weights-op": fetch_weights.VERSION,
    "batch-generate-op": batch_generate.VERSION,
    "evaluate-op": evaluate.VERSION,
    "drift-op": drift.VERSION,
    "gate-op": gate.VERSION,
    "register-op": register.VERSION,
    "deploy-op": deploy.VERSION,
    "skip-deploy-op": deploy.VERSION,
}


def _configure(task: dsl.PipelineTask) -> dsl.PipelineTask:
    name = task.component_spec.name
    task.set_caching_options(name in _CACHE_SAFE)
    kubernetes.add_pod_label(task, "champion.io/component-version", _VERSIONS[name])
    return task


@dsl.pipeline(name=PIPELINE_NAME, description="Evaluation-gated promotion of an LLM model+prompt bundle (champion).")
def promotion_pipeline(
    data_source: str = "demo",
    eval_fraction: float = 1.0,
    seed: int = 0,
    limit: int = 0,
    model_source: str = "smollm2",
    weights_cache: str = "",
    trust_remote_code: bool = False,
    prompt: str = "qa-concise",
    generation_backend: str = "transformers",
    batch_size: int = 16,
    evaluator_config: str = "default",
    drift_reference: str = "demo",
    gate_config: str = "default",
    mlflow_tracking_uri: str = "http://mlflow.mlflow.svc.cluster.local:5000",
    registered_model_name: str = "champion-qa",
    service_name: str = "champion-qa",
    namespace: str = "kubeflow-user-example-com",
    storage_uri: str = "pvc://champion-models/{model_digest}",
    serving_runtime: str = "huggingface-vllm",
    accelerator_type: str = "nvidia.com/gpu",
    accelerator_count: int = 1,
    gpu_node_selector: dict = {},
    gpu_tolerations: list = [],
) -> NamedTuple(
    "PromotionOutputs",
    [
        ("passed", bool),
        ("bundle", str),
        ("model_version", str),
        ("decision", Artifact),
        ("gate_report", Markdown),
        ("scores", Dataset),
        ("eval_metrics", Metrics),
        ("judge_report", Markdown),
        ("drift_report", HTML),
        ("drift_metrics", Metrics),
        ("deployment", str),
    ],
):
    data_task = _configure(preprocess_data.preprocess_data_op(data_source=data_source, eval_fraction=eval_fraction, seed=seed, limit=limit))
    weights_task = _configure(fetch_weights.fetch_weights_op(model_source=model_source, weights_cache=weights_cache, trust_remote_code=trust_remote_code))

    generate_task = _configure(
        batch_generate.batch_generate_op(
            eval_set=data_task.outputs["eval_set"],
            model=weights_task.outputs["model"],
            model_digest=weights_task.outputs["model_digest"],
            dataset_digest=data_task.outputs["dataset_digest"],
            prompt=prompt,
            backend=generation_backend,
            batch_size=batch_size,
        )
    )
    generate_task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
    kubernetes.add_node_selector_json(generate_task, gpu_node_selector)
    kubernetes.add_toleration_json(generate_task, gpu_tolerations)

    evaluate_task = _configure(
        evaluate.evaluate_op(
            generations=generate_task.outputs["generations"],
            bundle=generate_task.outputs["bundle"],
            evaluator_config=evaluator_config,
            weights_cache=weights_cache,
        )
    )
    drift_task = _configure(drift.drift_op(generations=generate_task.outputs["generations"], drift_reference=drift_reference))
    gate_task = _configure(gate.gate_op(
            scores=evaluate_task.outputs["scores"],
            bundle=evaluate_task.outputs["bundle"],
            gate_config=gate_config,
            judge_reliability=evaluate_task.outputs["judge_reliability"],
        ))
    register_task = _configure(
        register.register_op(
            bundle=evaluate_task.outputs["bundle"],
            prompt=prompt,
            model_source=model_source,
            mlflow_tracking_uri=mlflow_tracking_uri,
            registered_model_name=registered_model_name,
            decision=gate_task.outputs["decision"],
            report=gate_task.outputs["report"],
            scores=evaluate_task.outputs["scores"],
        )
    )

    with dsl.If(gate_task.outputs["passed"] == True):  # noqa: E712 (compiled to a CEL condition)
        deploy_task = _configure(
            deploy.deploy_op(
                bundle=evaluate_task.outputs["bundle"],
                model_version=register_task.outputs["model_version"],
                registered_model_name=registered_model_name,
                service_name=service_name,
                namespace=namespace,
                storage_uri=storage_uri,
                serving_runtime=serving_runtime,
            )
        )
    with dsl.Else():
        skip_task = _configure(deploy.skip_deploy_op(gate_passed=gate_task.outputs["passed"]))

    outputs = NamedTuple(
        "PromotionOutputs",
        [("passed", bool), ("bundle", str), ("model_version", str), ("decision", Artifact), ("gate_report", Markdown), ("scores", Dataset), ("eval_metrics", Metrics), ("judge_report", Markdown), ("drift_report", HTML), ("drift_metrics", Metrics), ("deployment", str)],
    )
    return outputs(
        passed=gate_task.outputs["passed"],
        bundle=evaluate_task.outputs["bundle"],
        model_version=register_task.outputs["model_version"],
        decision=gate_task.outputs["decision"],
        gate_report=gate_task.outputs["report"],
        scores=evaluate_task.outputs["scores"],
        eval_metrics=evaluate_task.outputs["metrics"],
        judge_report=evaluate_task.outputs["judge_report"],
        drift_report=drift_task.outputs["report"],
        drift_metrics=drift_task.outputs["metrics"],
        deployment=dsl.OneOf(deploy_task.outputs["deployment"], skip_task.outputs["deployment"]),
    )
