"""What both pipelines share: the signature built from a parameter model, per-step settings (cache
policy, version label, GPU scheduling), pinning the inputs, and the loop that scores each bundle
(fetch → fine-tune → generate → evaluate) for the challenger and the champion alike."""

import inspect
import os
import types
from typing import Any, Callable, NamedTuple

from kfp import dsl, kubernetes
from pydantic import BaseModel

from champion import parameters as P
from champion import tracing
from components import (
    GPU_IMAGE,
    batch_generate,
    by_task_name,
    check_judge,
    evaluate,
    fetch_weights,
    fine_tune,
    pin_inputs,
    plan_bundles,
    preprocess_data,
)


def configure(task: dsl.PipelineTask) -> dsl.PipelineTask:
    name = task.component_spec.name
    # KFP's step cache keys on a step's parameters and input artifacts. Every mutable input is pinned by
    # pin_inputs at the start of the run and the steps that read one check its pin, so a step declared
    # cacheable (components.Step) is a pure function of its inputs.
    step = by_task_name()[name].step
    task.set_caching_options(step.cacheable)
    kubernetes.add_pod_label(task, "champion.io/component-version", step.version)
    # The commit the pipeline was compiled from (pipelines/compile.py sets it): runs on a cluster record it.
    # Locally the runner's environment carries it, and it stays out of the step cache's key.
    if commit := os.environ.get("CHAMPION_BUILD_COMMIT"):
        task.set_env_variable("CHAMPION_GIT_COMMIT", commit)
    # Each step's span joins its run's trace (champion.tracing): the run's id from the pod's KFP label, where
    # it stays out of the step cache's key; the collector, when one was given at compile time.
    kubernetes.use_field_path_as_env(task, tracing.RUN_ID_ENV, tracing.RUN_ID_POD_FIELD)
    if otlp_endpoint := P.compile_settings().otlp_endpoint:
        task.set_env_variable("OTEL_EXPORTER_OTLP_ENDPOINT", otlp_endpoint)
    return task


def fields_of(params: Any, model: type[BaseModel]) -> dict[str, Any]:
    """The pipeline's inputs that make up ``model`` (e.g. DeploySettings), to pass on to a step by name."""
    return {name: getattr(params, name) for name in model.model_fields}


def typed_pipeline(model: type[P.PipelineParameters]) -> Callable[[Callable[[Any], Any]], Callable[..., Any]]:
    """Give a pipeline body ``body(params)`` the signature KFP compiles: one input per field of ``model``,
    with its type, default and help text (in the IR's input descriptions)."""

    def decorate(body: Callable[[Any], Any]) -> Callable[..., Any]:
        names = list(model.model_fields)

        def pipeline(*args: Any) -> Any:
            return body(types.SimpleNamespace(**dict(zip(names, args))))

        pipeline.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    name,
                    inspect.Parameter.POSITIONAL_OR_KEYWORD,
                    default=P.default(model, name),
                    annotation=P.kfp_type(model.model_fields[name].annotation),
                )
                for name in names
            ],
            return_annotation=inspect.signature(body).return_annotation,
        )
        pipeline.__name__ = body.__name__
        pipeline.__doc__ = (
            (body.__doc__ or "")
            + "\n\nArgs:\n"
            + "".join(f"    {name}: {P.help_text(model, name)}\n" for name in names)
        )
        return pipeline

    return decorate


def on_gpu(task: dsl.PipelineTask, params, accelerator_count=None) -> dsl.PipelineTask:
    task.set_accelerator_type(params.accelerator_type).set_accelerator_limit(
        params.accelerator_count if accelerator_count is None else accelerator_count
    )
    kubernetes.add_node_selector_json(task, params.gpu_node_selector)
    kubernetes.add_toleration_json(task, params.gpu_tolerations)
    # Kueue admits the pod (all its GPUs at once) only when its queue has them free.
    if queue := P.compile_settings().kueue_queue:
        kubernetes.add_pod_label(task, P.KUEUE_LABEL, queue)
    return task


def with_weights(task: dsl.PipelineTask, hf_token_secret=None) -> dsl.PipelineTask:
    """The weights cache PVC (when compiled with one) and, for steps that download, the Hugging Face
    token from a secret (optional: public models need none)."""
    if pvc := P.compile_settings().weights_pvc:
        kubernetes.mount_pvc(task, pvc_name=pvc, mount_path=P.WEIGHTS_MOUNT)
    if hf_token_secret is not None:
        kubernetes.use_secret_as_env(
            task, secret_name=hf_token_secret, secret_key_to_env={"token": "HF_TOKEN"}, optional=True
        )
    return task


def pin_and_prepare(params, *, model_source, prompt, eval_fraction=1.0, seed=0):
    """pin_inputs, then the data step that reads the pinned evaluation set: (pins task, data task)."""
    pins = configure(
        pin_inputs.pin_inputs_op(
            data_source=params.data_source,
            model_source=model_source,
            prompt=prompt,
            evaluator_config=params.evaluator_config,
            gate_config=params.gate_config,
            drift_reference=params.drift_reference,
            fine_tune_steps=getattr(params, "fine_tune_steps", 0),
        )
    )
    data = configure(
        preprocess_data.preprocess_data_op(
            data_source=params.data_source,
            data_pin=pins.outputs["data_pin"],
            eval_fraction=eval_fraction,
            seed=seed,
            limit=params.limit,
        )
    )
    return pins, data


class ScoredBundles(NamedTuple):
    """The scoring loop's outputs per (bundle, shard), bundle-major (the challenger's parts first, then the
    champion's), merged by the steps that read them (champion.shards.merge_scored); the weights sources per
    bundle."""

    scores: Any
    bundles: Any
    metrics: Any
    generations: Any
    weights_sources: Any


TRAINJOB_SETTINGS = ("trainer", "trainjob_nodes", "trainjob_gpus_per_node", "trainjob_runtime", "trainjob_timeout_s")


def _fine_tuning(params, name: str):
    """A fine-tuning setting: the promotion's parameter, or its default where a pipeline never fine-tunes."""
    return getattr(params, name, P.default(P.PromotionParameters, name))


def score_bundles(params, pins, data_task, champion_task, *, challenger: dict | None = None) -> ScoredBundles:
    """fetch weights → fine-tune (a pass-through at 0 steps) → generate one shard on a GPU node → score it, for
    each shard of the challenger (when given: its model source, pin,
    prompt, training prompt, fine-tune steps) and the champion (when resolve_champion found one).

    The same steps for challenger and champion, given only a bundle's values and never its role, so KFP's
    step cache (which keys on the step, locally on its name) serves a bundle scored as this run's
    challenger when a later run compares against it as the champion. On a cluster the bundles and their
    shards are scored in parallel. The outputs are per (bundle, shard), bundle-major: champion.shards merges them.
    """
    challenger = challenger or dict(model_source="", model_pin="", prompt="", training_prompt="", fine_tune_steps=0)
    plan = configure(
        plan_bundles.plan_bundles_op(
            **{f"challenger_{key}": value for key, value in challenger.items()},
            champion_model_source=champion_task.outputs["champion_model_source"],
            champion_model_pin=champion_task.outputs["champion_model_pin"],
            champion_prompt=champion_task.outputs["champion_prompt"],
            dataset_digest=data_task.outputs["dataset_digest"],
            evaluator_config=pins.outputs["evaluator_config"],
            judge_pin=pins.outputs["judge_pin"],
            shards=params.shards,
            n_eval=data_task.outputs["n_eval"],
            gate_config=pins.outputs["gate_config"],
            look=getattr(params, "look", 1),  # a run without a challenger has no looks
        )
    )
    # One iteration per (bundle, shard): the evaluation set in `shards` parts, generated and scored in
    # parallel GPU tasks; the steps after the loop merge each bundle's parts (champion.shards). One loop:
    # kfp.local (2.17) runs neither nested loops nor two loops in one pipeline, and KFP cannot hand a loop's
    # collected artifacts into another loop.
    with dsl.ParallelFor(plan.output, parallelism=2) as bundle:
        weights_task = with_weights(
            configure(
                fetch_weights.fetch_weights_op(
                    model_source=bundle.model_source,
                    model_pin=bundle.model_pin,
                    weights_cache=params.weights_cache,
                    trust_remote_code=params.trust_remote_code,
                )
            ),
            params.hf_token_secret,
        )
        tune_task = _fine_tune(params, bundle, weights_task, data_task)
        generate_task = _generate(params, bundle, tune_task, data_task)
        evaluate_task = with_weights(  # the judge model comes from the weights cache too
            configure(
                evaluate.evaluate_op(
                    generations=generate_task.outputs["generations"],
                    bundle=generate_task.outputs["bundle"],
                    evaluator_config=bundle.evaluator_config,
                    judge_pin=bundle.judge_pin,
                    weights_cache=params.weights_cache,
                    cache_root=params.cache_root,
                )
            )
        )
    return ScoredBundles(
        scores=dsl.Collected(evaluate_task.outputs["scores"]),
        bundles=dsl.Collected(evaluate_task.outputs["bundle"]),
        metrics=dsl.Collected(evaluate_task.outputs["metrics"]),
        generations=dsl.Collected(generate_task.outputs["generations"]),
        weights_sources=dsl.Collected(tune_task.outputs["weights_source"]),
    )


def _fine_tune(params, bundle, weights_task, data_task) -> dsl.PipelineTask:
    """The scoring loop's fine-tune step (a pass-through at 0 steps), on its own GPUs."""
    return on_gpu(
        with_weights(
            configure(
                fine_tune.fine_tune_op(
                    model=weights_task.outputs["model"],
                    train_set=data_task.outputs["train_set"],
                    model_source=bundle.model_source,
                    prompt=bundle.training_prompt,
                    steps=bundle.fine_tune_steps,
                    learning_rate=_fine_tuning(params, "fine_tune_learning_rate"),
                    lora_rank=_fine_tuning(params, "lora_rank"),
                    merge_adapter=_fine_tuning(params, "merge_adapter"),
                    load_in_4bit=_fine_tuning(params, "fine_tune_4bit"),
                    seed=_fine_tuning(params, "seed"),
                    mlflow_tracking_uri=params.mlflow_tracking_uri,
                    **{name: _fine_tuning(params, name) for name in TRAINJOB_SETTINGS},
                    trainjob_image=GPU_IMAGE,  # the job's nodes run the step's own image
                    namespace=getattr(params, "namespace", P.default(P.PromotionParameters, "namespace")),
                    weights_cache=params.weights_cache,
                    weights_pvc=P.compile_settings().weights_pvc,
                    gpu_type=params.accelerator_type,
                    gpu_count=_fine_tuning(params, "fine_tune_gpu_count"),
                )
            ),
            params.hf_token_secret,
        ),
        params,
        accelerator_count=_fine_tuning(params, "fine_tune_gpu_count"),
    )


def _generate(params, bundle, tune_task, data_task) -> dsl.PipelineTask:
    """The scoring loop's generation step: one shard of the evaluation set, on a GPU node."""
    return on_gpu(
        with_weights(
            configure(
                batch_generate.batch_generate_op(
                    eval_set=data_task.outputs["eval_set"],
                    model=tune_task.outputs["tuned"],
                    model_digest=tune_task.outputs["model_digest"],
                    dataset_digest=bundle.dataset_digest,
                    prompt=bundle.prompt,
                    shard=bundle.shard,
                    shards=bundle.shards,
                    rows=bundle.rows,
                    backend=params.generation_backend,
                    batch_size=params.batch_size,
                    tensor_parallel_size=params.tensor_parallel_size,
                    max_num_seqs=params.max_num_seqs,
                    gpu_memory_utilization=params.gpu_memory_utilization,
                    gpu_type=params.accelerator_type,
                    gpu_count=params.accelerator_count,
                    cache_root=params.cache_root,
                    context_overflow=params.context_overflow,
                )
            )
        ),
        params,
    )


def judge_check(params, pins) -> dsl.PipelineTask:
    """May the judge vote: once per judge and evaluator config (cached across runs)."""
    return with_weights(
        configure(
            check_judge.check_judge_op(
                evaluator_config=pins.outputs["evaluator_config"],
                judge_pin=pins.outputs["judge_pin"],
                weights_cache=params.weights_cache,
                cache_root=params.cache_root,
            )
        )
    )
