"""evaluate: score every generation with the evaluators a versioned config names.

Scores: semantic similarity, exact match, token F1, ragas' BLEU/ROUGE-L/chrF/string similarity, and
(when the config has a judge) an LLM-as-judge grade with its rationale. Whether the judge may vote is
the check_judge step's answer.
"""

from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Output

from components import Step, cpu_step

STEP = Step(title="Score answers", version="3.1.0", cacheable=True)


@cpu_step
def evaluate_op(
    generations: Input[Dataset],
    bundle: str,
    evaluator_config: str,
    judge_pin: str,
    weights_cache: str,
    cache_root: str,
    scores: Output[Dataset],
    metrics: Output[Metrics],
) -> NamedTuple("EvaluateOutputs", [("bundle", str)]):
    """evaluate v3.1.0: per-example scores from a versioned evaluator config and the judge's grades (with what the judge cost this run); embeddings and verdicts cached per example."""
    from champion.step_process import begin_step

    begin_step()
    import math
    from collections import namedtuple

    from champion.artifacts import persist_metadata
    from champion.bundle import Bundle
    from champion.cache import ExampleCache
    from champion.jsonl import read_jsonl, write_jsonl
    from champion.pinning import check_pin
    from evaluators.config import load_evaluator_config
    from evaluators.evaluate import evaluate_generations
    from evaluators.run_inputs import pin_judge

    config = load_evaluator_config(evaluator_config)
    check_pin(judge_pin, pin_judge(config), "the judge model")
    cache = ExampleCache(cache_root)
    result = evaluate_generations(read_jsonl(generations.path), config, weights_cache=weights_cache, cache=cache)
    write_jsonl(result.table, scores.path)
    for name, value in result.aggregates.items():
        if math.isfinite(value):  # KFP Metrics cannot hold NaN; a NaN mean is in the score table and fails the gate
            metrics.log_metric(name, value)
    for name, value in result.judge_spent.items():  # cache misses only: an unchanged judge costs nothing
        metrics.log_metric(f"judge_spent_{name}", float(value))
    scored = Bundle.model_validate_json(bundle).model_copy(update={"evaluator_digest": config.digest})
    scores.metadata.update(
        {
            "rows": len(result.table),
            "bundle_id": scored.id,
            "evaluator_config": f"{config.name}@{config.version}",
            "cache": cache.totals(),
        }
    )
    persist_metadata(metrics)
    return namedtuple("EvaluateOutputs", ["bundle"])(scored.model_dump_json())
