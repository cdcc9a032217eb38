"""batch_generate: render the bundle's prompt for every example and generate, batched."""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from components import Step, gpu_step

STEP = Step(title="Generate answers", version="1.7.0", cacheable=True)


@gpu_step
def batch_generate_op(
    eval_set: Input[Dataset],
    model: Input[Model],
    model_digest: str,
    dataset_digest: str,
    prompt: str,
    shard: int,
    shards: int,
    rows: int,
    backend: str,
    batch_size: int,
    tensor_parallel_size: int,
    max_num_seqs: int,
    gpu_memory_utilization: float,
    gpu_type: str,
    gpu_count: int,
    cache_root: str,
    context_overflow: str,
    generations: Output[Dataset],
    metrics: Output[Metrics],
) -> NamedTuple("GenerateOutputs", [("bundle", str)]):
    """batch_generate v1.7.0: one shard of the evaluation set's first `rows` examples (0: all of them); render the prompt for every example, check it fits the context, and generate (transformers: batches sized from free GPU memory, static KV cache on a GPU; or vLLM with its engine settings); unchanged examples come from the per-example cache."""
    from champion.step_process import begin_step

    begin_step()
    from collections import namedtuple

    from champion.artifacts import persist_metadata
    from champion.bundle import Bundle
    from champion.cache import ExampleCache
    from champion.jsonl import read_jsonl, write_jsonl
    from champion.shards import shard_rows
    from champion.weights import verify_weights
    from generation import engine_options
    from generation.batch import generate_answers
    from generation.cached import cached_generator
    from prompts import load_prompt

    if verify_weights(model.path) != model_digest:
        raise RuntimeError("the model folder does not match the digest fetch_weights reported; refusing to generate.")
    template = load_prompt(prompt)
    cache = ExampleCache(cache_root)
    options = engine_options(
        backend,
        batch_size=batch_size,
        tensor_parallel_size=tensor_parallel_size,
        max_num_seqs=max_num_seqs,
        gpu_memory_utilization=gpu_memory_utilization,
    )
    generator = cached_generator(backend, model.path, cache, {"model_digest": model_digest}, **options)
    examples = shard_rows(read_jsonl(eval_set.path)[: rows or None], shard, shards)
    run = generate_answers(examples, template, generator, model_path=model.path, context_overflow=context_overflow)
    if run.skipped:
        print(
            f"batch_generate: {len(run.skipped)} example(s) left out, they do not fit the context of {run.context_limit} tokens: {run.skipped[:10]}"
        )
    write_jsonl(run.rows, generations.path)
    figures = {
        "generation_seconds": run.seconds,
        "completion_tokens": run.completion_tokens,
        "examples": len(run.rows),
        "generated_examples": run.generated,
        "generated_tokens": run.generated_tokens,
        "cached_examples": len(run.rows) - run.generated,
    }
    if (
        run.tokens_per_second is not None
    ):  # measured on generated answers only; absent when the cache answered everything
        figures["tokens_per_second"] = run.tokens_per_second
    for name, value in figures.items():
        metrics.log_metric(name, value)
    bundle = Bundle(
        model_digest=model_digest,
        prompt=template.ref,
        decoding=template.decoding.model_dump(mode="json"),
        dataset_digest=dataset_digest,
    )
    # The accelerator is recorded (scores can shift with hardware) but is not part of the bundle id.
    # Taking it as an input also makes KFP's compiler pass it into condition sub-DAGs, whose GPU
    # resource placeholders would otherwise reference an undeclared parent input.
    generations.metadata.update(
        {
            "rows": len(run.rows),
            "shard": f"{shard + 1} of {shards}",
            "set_rows": rows or "all",
            "skipped_context_overflow": len(run.skipped),
            "context_limit": run.context_limit or 0,
            "prompt": f"{template.name}@{template.version}",
            "backend": backend,
            "accelerator": f"{gpu_count} x {gpu_type}",
            "cache": cache.totals(),
        }
    )
    persist_metadata(metrics)
    return namedtuple("GenerateOutputs", ["bundle"])(bundle.model_dump_json())
