"""drift: an Evidently report of the current outputs against a reference (the champion's outputs or a reference set)."""

from typing import List

from kfp.dsl import HTML, Artifact, Dataset, Input, Metrics, Output

from components import Step, cpu_step

STEP = Step(title="Drift report", version="2.2.0", cacheable=True)


@cpu_step
def drift_op(
    generations: Input[List[Dataset]],
    shards: int,
    drift_reference: str,
    drift_pin: str,
    cache_root: str,
    report: Output[HTML],
    report_json: Output[Artifact],
    metrics: Output[Metrics],
):
    """drift v2.2.0: Evidently drift report of the challenger's outputs (the first of the run's generations) against a reference set, checked against the run's pin."""
    from champion.step_process import begin_step

    begin_step()
    import math

    from champion.artifacts import persist_metadata
    from champion.cache import ExampleCache
    from champion.jsonl import read_jsonl
    from champion.pinning import check_pin
    from evaluators.drift import drift_report, load_reference
    from evaluators.run_inputs import pin_reference
    from evaluators.semantic import SemanticSimilarity

    check_pin(drift_pin, pin_reference(drift_reference), f"drift reference {drift_reference}")
    # The challenger's outputs: the first bundle's `shards` parts of the scoring loop (bundle-major, shard order).
    current = [row for part in generations[:shards] for row in read_jsonl(part.path)]
    # Similarity to the reference answer uses the evaluate step's embeddings from the per-example cache:
    # the embedding model is loaded (and sentence-transformers imported) only for texts never embedded.
    semantic = SemanticSimilarity(cache=ExampleCache(cache_root))
    result = drift_report(current, load_reference(drift_reference, {row["id"] for row in current}), semantic=semantic)
    with open(report.path, "w", encoding="utf-8") as handle:
        handle.write(result.html)
    with open(report_json.path, "w", encoding="utf-8") as handle:
        handle.write(result.json)
    for name, value in result.summary.items():
        if isinstance(value, (int, float)) and math.isfinite(value):
            metrics.log_metric(f"drift_{name}", float(value))
    persist_metadata(metrics)
