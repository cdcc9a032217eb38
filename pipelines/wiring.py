"""What both pipelines share: per-step settings (cache policy, version label, GPU scheduling) and the
fetch → generate → evaluate chain that scores one bundle."""

from typing import NamedTuple

from kfp import dsl, kubernetes

from components import batch_generate, deploy, drift, evaluate, fetch_weights, gate, monitor, preprocess_data, register, resolve_champion

# KFP's step cache keys on parameters and artifact ids, not on what a path or URI currently holds.
# Steps that read mutable sources (a data path, a model URI, the registry, a drift reference) or
# have side effects (MLflow, KServe) must always run; pure functions of their inputs may be cached.
CACHE_SAFE = {"batch-generate-op", "evaluate-op", "gate-op"}
VERSIONS = {
    "preprocess-data-op": preprocess_data.VERSION,
    "fetch-weights-op": fetch_weights.VERSION,
    "resolve-champion-op": resolve_champion.VERSION,
    "batch-generate-op": batch_generate.VERSION,
    "evaluate-op": evaluate.VERSION,
    "drift-op": drift.VERSION,
    "gate-op": gate.VERSION,
    "register-op": register.VERSION,
    "deploy-op": deploy.VERSION,
    "skip-deploy-op": deploy.VERSION,
    "monitor-op": monitor.VERSION,
    "no-champion-op": monitor.VERSION,
}


def configure(task: dsl.PipelineTask) -> dsl.PipelineTask:
    name = task.component_spec.name
    task.set_caching_options(name in CACHE_SAFE)
    kubernetes.add_pod_label(task, "champion.io/component-version", VERSIONS[name])
    return task


def on_gpu(task: dsl.PipelineTask, accelerator_type, accelerator_count, node_selector, tolerations) -> dsl.PipelineTask:
    task.set_accelerator_type(accelerator_type).set_accelerator_limit(accelerator_count)
    kubernetes.add_node_selector_json(task, node_selector)
    kubernetes.add_toleration_json(task, tolerations)
    return task


class BundleTasks(NamedTuple):
    generate: dsl.PipelineTask
    evaluate: dsl.PipelineTask


def evaluate_bundle(data_task, model_source, prompt, *, check_judge, weights_cache, trust_remote_code, generation_backend, batch_size, evaluator_config, gpu) -> BundleTasks:
    """fetch weights → generate on a GPU node → score: the same three steps for challenger and champion."""
    weights_task = configure(fetch_weights.fetch_weights_op(model_source=model_source, weights_cache=weights_cache, trust_remote_code=trust_remote_code))
    generate_task = on_gpu(
        configure(
            batch_generate.batch_generate_op(
                eval_set=data_task.outputs["eval_set"],
                model=weights_task.outputs["model"],
                model_digest=weights_task.outputs["model_digest"],
                dataset_digest=data_task.outputs["dataset_digest"],
                prompt=prompt,
                backend=generation_backend,
                batch_size=batch_size,
                gpu_type=gpu["accelerator_type"],
                gpu_count=gpu["accelerator_count"],
            )
        ),
        **gpu,
    )
    evaluate_task = configure(
        evaluate.evaluate_op(
            generations=generate_task.outputs["generations"],
            bundle=generate_task.outputs["bundle"],
            evaluator_config=evaluator_config,
            weights_cache=weights_cache,
            check_judge=check_judge,
        )
    )
    return BundleTasks(generate_task, evaluate_task)
