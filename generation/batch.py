"""batch_generate: render the bundle's prompt for every example and generate, batched."""

import time
from dataclasses import dataclass, field

from champion.errors import DataError
from generation import Generator
from generation.context import enforce, measure
from prompts import PromptTemplate


@dataclass
class GenerationRun:
    rows: list[dict]
    seconds: float
    completion_tokens: int
    # Generated in this run, apart from answers the per-example cache gave back: throughput is measured
    # on generated work only (None when everything came from the cache).
    generated: int
    generated_tokens: int
    tokens_per_second: float | None
    skipped: list[str] = field(
        default_factory=list
    )  # ids left out because they do not fit the context (context_overflow=skip)
    context_limit: int | None = None


def generate_answers(
    examples: list[dict],
    prompt: PromptTemplate,
    generator: Generator,
    *,
    model_path: str = "",
    context_overflow: str = "fail",
) -> GenerationRun:
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
        report = measure(model_path, conversations, [e["id"] for e in examples], prompt.decoding.max_tokens)
        limit = report.limit
        left_out = enforce(report, context_overflow)
        if left_out:
            kept = [(e, c) for e, c in zip(examples, conversations) if e["id"] not in left_out]
            if not kept:
                raise DataError(
                    f"every example overflows the model's context of {report.limit} tokens.",
                    "shorten the examples or use a model with a longer context.",
                )
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
    computed = getattr(generator, "computed", None)
    if computed is None:  # an uncached generator generated everything
        generated, generated_tokens, generated_seconds = len(generations), completion_tokens, seconds
    else:
        generated, generated_seconds = computed, getattr(generator, "computed_seconds")  # a CachedGenerator
        generated_tokens = round(completion_tokens * computed / len(generations)) if generations else 0
    return GenerationRun(
        rows=rows,
        seconds=seconds,
        completion_tokens=completion_tokens,
        generated=generated,
        generated_tokens=generated_tokens,
        tokens_per_second=generated_tokens / generated_seconds if generated and generated_seconds > 0 else None,
        skipped=skipped,
        context_limit=limit,
    )
