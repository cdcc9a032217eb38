"""batch_generate: render the bundle's prompt for every example and generate, batched."""

import time
from dataclasses import dataclass, field
from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Model, Output

from champion.errors import DataError
from components import gpu_step
from prompts import PromptTemplate
from serving.generation import Generator

VERSION = "1.4.0"


@dataclass
class GenerationRun:
    rows: list[dict]
    tokens_per_second: float
    seconds: float
    completion_tokens: int
    skipped: list[str] = field(default_factory=list)  # ids left out because they do not fit the context (context_overflow=skip)
    context_limit: int | None = None


def generate_answers(examples: list[dict], prompt: PromptTemplate, generator: Generator, *, model_path: str = "", context_overflow: str = "fail") -> GenerationRun:
    """One output row per example: the input columns plus output, token counts and finish reason.

    With ``model_path`` every rendered prompt is first measured against the model's context (with room
    for ``max_tokens``): ``context_overflow="fail"`` stops here naming the examples that do not fit,
    ``"skip"`` leaves them out and reports them. Nothing that overflows is ever generated or scored."""
    if not examples:
        raise DataError("there are no examples to generate for.", "check the evaluation set and --limit.")
    conversations = []
    for example in examples:
        missing = [v for v in prompt.variables if v not in example]
        if missing:
            raise DataError(
                f"prompt {prompt.name} v{prompt.version} needs column(s) {missing}, which example {example.get('id')!r} lacks.",
                "add the column to the evaluation set, or use a prompt that does not need it.",
            )
        conversations.append(prompt.render(**{v: example[v] for v in prompt.variables}))
    skipped: list[str] = []
    limit = None
    if model_path:
        from serving.generation.context import enforce, measure

        report = measure(model_path, conversations, [e["id"] for e in examples], prompt.decoding.max_tokens)
        limit = report.limit
        left_out = enforce(report, context_overflow)
        if left_out:
            kept = [(e, c) for e, c in zip(examples, conversations) if e["id"] not in left_out]
            if not kept:
                raise DataError(f"every example overflows the model's context of {report.limit} tokens.", "shorten the examples or use a model with a longer context.")
            skipped = [e["id"] for e in examples if e["id"] in left_out]
            examples, conversations = [e for e, _ in kept], [c for _, c in kept]
    started = time.perf_counter()
    generations = generator.generate(conversations, prompt.decoding)
    seconds = time.perf_counter() - started
    rows = [
        {
            **example,
            "output": generation.text,
            "finish_reason": generation.finish_reason,
            "prompt_tokens": generation.prompt_tokens,
            "completion_tokens": generation.completion_tokens,
            "latency_s": generation.latency_s,
        }
        for example, generation in zip(examples, generations, strict=True)
    ]
    completion_tokens = sum(g.completion_tokens for g in generations)
    return GenerationRun(rows=rows, tokens_per_second=completion_tokens / seconds if seconds else 0.0, seconds=seconds, completion_tokens=completion_tokens, skipped=skipped, context_limit=limit)


@gpu_step
def batch_generate_op(
    eval_set: Input[Dataset],
    model: Input[Model],
    model_digest: str,
    dataset_digest: str,
    prompt: str,
    backend: str,
    batch_size: int,
    gpu_type: str,
    gpu_count: int,
    cache_root: str,
    context_overflow: str,
    generations: Output[Dataset],
    metrics: Output[Metrics],
) -> NamedTuple("GenerateOutputs", [("bundle", str)]):
    """batch_generate v1.4.0: render the prompt for every example, check it fits the context, and generate (transformers or vLLM); unchanged examples come from the per-example cache."""
    from collections import namedtuple

    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl, write_jsonl
    from components.batch_generate import generate_answers
    from components.fetch_weights import verify_weights
    from prompts import load_prompt
    from champion.cache import ExampleCache
    from serving.generation.cached import cached_generator

    if verify_weights(model.path) != model_digest:
        raise RuntimeError("the model folder does not match the digest fetch_weights reported; refusing to generate.")
    template = load_prompt(prompt)
    cache = ExampleCache(cache_root)
    generator = cached_generator(backend, model.path, cache, {"model_digest": model_digest}, batch_size=batch_size)
    run = generate_answers(read_jsonl(eval_set.path), template, generator, model_path=model.path, context_overflow=context_overflow)
    if run.skipped:
        print(f"batch_generate: {len(run.skipped)} example(s) left out, they do not fit the context of {run.context_limit} tokens: {run.skipped[:10]}")
    print(f"batch_generate: cache {cache.summary() or 'off'}")
    write_jsonl(run.rows, generations.path)
    for name, value in {"tokens_per_second": run.tokens_per_second, "generation_seconds": run.seconds, "completion_tokens": run.completion_tokens, "examples": len(run.rows),
                        "cache_hits": cache.stats["generation.hits"], "cache_misses": cache.stats["generation.misses"]}.items():
        metrics.log_metric(name, value)
    bundle = Bundle(model_digest=model_digest, prompt=template.ref, decoding=template.decoding.model_dump(mode="json"), dataset_digest=dataset_digest)
    # The accelerator is recorded (scores can shift with hardware) but is not part of the bundle id.
    # Taking it as an input also makes KFP's compiler pass it into condition sub-DAGs, whose GPU
    # resource placeholders would otherwise reference an undeclared parent input.
    generations.metadata.update({"rows": len(run.rows), "skipped_context_overflow": len(run.skipped), "context_limit": run.context_limit or 0, "prompt": f"{template.name}@{template.version}", "backend": backend, "accelerator": f"{gpu_count} x {gpu_type}"})
    return namedtuple("GenerateOutputs", ["bundle"])(bundle.model_dump_json())
