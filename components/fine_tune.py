"""fine_tune: LoRA on the training split, on a GPU node (a few steps on the CPU for tests).

The work is done by ``training.fine_tuning`` (its docstring has the details).
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import Step, gpu_step

STEP = Step(title="Fine-tune (LoRA)", version="2.0.0", cacheable=True)


@gpu_step
def fine_tune_op(
    model: Input[Model],
    train_set: Input[Dataset],
    model_source: str,
    prompt: str,
    steps: int,
    learning_rate: float,
    lora_rank: int,
    merge_adapter: bool,
    load_in_4bit: bool,
    seed: int,
    mlflow_tracking_uri: str,
    trainer: str,
    trainjob_nodes: int,
    trainjob_gpus_per_node: int,
    trainjob_runtime: str,
    trainjob_timeout_s: float,
    trainjob_image: str,
    namespace: str,
    weights_cache: str,
    weights_pvc: str,
    gpu_type: str,
    gpu_count: int,
    tuned: Output[Model],
    metrics: Output[Metrics],
) -> NamedTuple("FineTuneOutputs", [("model_digest", str), ("weights_source", str)]):
    """fine_tune v2.0.0: LoRA (in the pod, or as a Kubeflow TrainJob over several nodes) with TRL's SFTTrainer on the training split (completion-only loss; bf16 and gradient checkpointing on a GPU, optional 4-bit base), evaluation loss on a held-out share, losses to MLflow; merged into safetensors (or kept as an adapter); steps=0 passes the fetched weights through."""
    from champion.step_process import begin_step

    begin_step()
    from collections import namedtuple

    from champion.artifacts import persist_metadata
    from champion.jsonl import read_jsonl
    from prompts import load_prompt
    from training.fine_tuning import FineTuneSettings, fine_tune

    settings = FineTuneSettings(
        steps=steps,
        learning_rate=learning_rate,
        lora_rank=lora_rank,
        lora_alpha=2 * lora_rank,
        merge_adapter=merge_adapter,
        load_in_4bit=load_in_4bit,
        seed=seed,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    # steps=0 passes the weights through and needs no prompt (the run passes none then, see pin_inputs).
    template = load_prompt(prompt) if steps > 0 else None
    if trainer == "trainjob" and steps > 0:
        from pathlib import Path

        from serving.kube import api_client
        from training.trainjob import TrainJobOptions, run_trainjob

        options = TrainJobOptions(
            namespace=namespace,
            image=trainjob_image,
            pvc=weights_pvc,
            mount=weights_cache,
            nodes=trainjob_nodes,
            gpus_per_node=trainjob_gpus_per_node,
            gpu_type=gpu_type,
            runtime=trainjob_runtime,
            timeout_s=trainjob_timeout_s,
        )
        result = run_trainjob(
            api_client(), Path(model.path), Path(tuned.path), read_jsonl(train_set.path), template, settings, options
        )
    else:
        result = fine_tune(model.path, tuned.path, read_jsonl(train_set.path), template, settings)
    # The accelerator is recorded, not used: taking it as an input also makes KFP's compiler pass it into the
    # scoring loop's sub-DAG, whose GPU resource placeholders would otherwise reference an undeclared input.
    tuned.metadata.update(
        {
            "digest": result.digest,
            "fine_tuned": result.trained,
            "train_examples": result.train_examples,
            "accelerator": f"{gpu_count} x {gpu_type}",
            "trainer": trainer,
        }
    )
    if result.losses:
        metrics.log_metric("first_loss", result.losses[0])
        metrics.log_metric("last_loss", result.losses[-1])
        metrics.log_metric("train_seconds", round(result.seconds, 3))
    for name in ("eval_loss_before", "eval_loss_after"):
        if getattr(result, name) is not None:
            metrics.log_metric(name, round(getattr(result, name), 4))
    metrics.log_metric("train_examples", float(result.train_examples))
    metrics.log_metric("eval_examples", float(result.eval_examples))
    # A fine-tuned bundle's weights live in this artifact: that is what the champion is re-fetched from.
    persist_metadata(metrics)
    return namedtuple("FineTuneOutputs", ["model_digest", "weights_source"])(
        result.digest, tuned.uri if result.trained else model_source
    )
