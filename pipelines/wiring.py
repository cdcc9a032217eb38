"""What both pipelines share: per-step settings (cache policy, version label, GPU scheduling) and the
fetch → generate → evaluate chain that scores one bundle."""

from typing import NamedTuple

import os

from kfp import dsl, kubernetes

from components import batch_generate, deploy, drift, evaluate, fetch_weights, fine_tune, gate, monitor, preprocess_data, register, resolve_champion

# A PersistentVolumeClaim that keeps fetched and converted weights between runs, chosen when the
# pipeline is compiled (compile.sh passes CHAMPION_WEIGHTS_PVC): the weight steps mount it here.
WEIGHTS_PVC = os.environ.get("CHAMPION_WEIGHTS_PVC", "")
WEIGHTS_MOUNT = "/mnt/champion-weights"

# KFP's step cache (whole steps, on a cluster) keys on parameters and artifact ids, not on what a path or URI currently holds.
# Steps that read mutable sources (a data path, a model URI, the registry, a drift reference) or
# have side effects (MLflow, KServe) must always run; pure functions of their inputs may be cached.
CACHE_SAFE = {"batch-generate-op", "evaluate-op", "gate-op"}
VERSIONS = {
    "preprocess-data-op": preprocess_data.VERSION,
    "fetch-weights-op": fetch_weights.VERSION,
    "fine-tune-op": fine_tune.VERSION,
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


def with_weights(task: dsl.PipelineTask, hf_token_secret=None) -> dsl.PipelineTask:
    """The weights cache PVC (when compiled with one) and, for steps that download, the Hugging Face
    token from a secret (optional: public models need none)."""
    if WEIGHTS_PVC:
        kubernetes.mount_pvc(task, pvc_name=WEIGHTS_PVC, mount_path=WEIGHTS_MOUNT)
    if hf_token_secret is not None:
        kubernetes.use_secret_as_env(task, secret_name=hf_token_secret, secret_key_to_env={"token": "HF_TOKEN"}, optional=True)
    return task


class BundleTasks(NamedTuple):
    generate: dsl.PipelineTask
    evaluate: dsl.PipelineTask
    weights_source: object  # the fine-tuned artifact's URI, or the model source as given


def evaluate_bundle(data_task, model_source, prompt, *, check_judge, weights_cache, trust_remote_code, generation_backend, batch_size, evaluator_config, gpu, hf_token_secret, cache_root, context_overflow, fine_tuning=None, after=None) -> BundleTasks:
    """fetch weights (→ fine-tune) → generate on a GPU node → score: the chain for challenger and champion.

    ``fine_tuning`` (the challenger's) holds the fine_tune parameters and its GPU count; the champion's
    weights are fixed, so its chain has no fine-tune step. ``after``: a task the weights fetch waits for.
    """
    weights_task = with_weights(configure(fetch_weights.fetch_weights_op(model_source=model_source, weights_cache=weights_cache, trust_remote_code=trust_remote_code)), hf_token_secret)
    if after is not None:  # the input checks (resolve_champion) come before any weights are fetched
        weights_task.after(after)
    weights, digest = weights_task.outputs["model"], weights_task.outputs["model_digest"]
    tune_task = None
    if fine_tuning is not None:
        tune_task = on_gpu(
            with_weights(
                configure(
                    fine_tune.fine_tune_op(
                        model=weights,
                        train_set=data_task.outputs["train_set"],
                        model_source=model_source,
                        prompt=prompt,
                        steps=fine_tuning["steps"],
                        learning_rate=fine_tuning["learning_rate"],
                        lora_rank=fine_tuning["lora_rank"],
                        merge_adapter=fine_tuning["merge_adapter"],
                        seed=fine_tuning["seed"],
                    )
                ),
                hf_token_secret,
            ),
            **{**gpu, "accelerator_count": fine_tuning["gpu_count"]},
        )
        weights, digest = tune_task.outputs["tuned"], tune_task.outputs["model_digest"]
    generate_task = on_gpu(
        with_weights(
            configure(
                batch_generate.batch_generate_op(
                    eval_set=data_task.outputs["eval_set"],
                    model=weights,
                    model_digest=digest,
                    dataset_digest=data_task.outputs["dataset_digest"],
                    prompt=prompt,
                    backend=generation_backend,
                    batch_size=batch_size,
                    gpu_type=gpu["accelerator_type"],
                    gpu_count=gpu["accelerator_count"],
                    cache_root=cache_root,
                    context_overflow=context_overflow,
                )
            )
        ),
        **gpu,
    )
    evaluate_task = with_weights(configure(
        evaluate.evaluate_op(
            generations=generate_task.outputs["generations"],
            bundle=generate_task.outputs["bundle"],
            evaluator_config=evaluator_config,
            weights_cache=weights_cache,
            check_judge=check_judge,
            cache_root=cache_root,
        )
    ))  # the judge model comes from the weights cache too
    return BundleTasks(generate_task, evaluate_task, tune_task.outputs["weights_source"] if tune_task is not None else model_source)
