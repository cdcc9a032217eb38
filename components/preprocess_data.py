"""preprocess_data: load an evaluation set, validate it, normalise it, split it, digest it."""

from typing import NamedTuple

from kfp.dsl import Dataset, Output

from components import Step, cpu_step

STEP = Step(title="Preprocess evaluation set", version="2.1.0", cacheable=True)


@cpu_step
def preprocess_data_op(
    data_source: str,
    data_pin: str,
    eval_fraction: float,
    seed: int,
    limit: int,
    eval_set: Output[Dataset],
    train_set: Output[Dataset],
) -> NamedTuple("PreprocessOutputs", [("dataset_digest", str), ("n_eval", int)]):
    """preprocess_data v2.1.0: check the data against the run's pin; validate, normalise, de-duplicate and split it; a request log becomes a seeded sample of distinct logged questions with their served answers (reference-free)."""
    from champion.step_process import begin_step

    begin_step()
    from collections import namedtuple

    from champion.data import pin_data, preprocess_data
    from champion.jsonl import write_jsonl
    from champion.pinning import check_pin

    check_pin(data_pin, pin_data(data_source), f"evaluation set {data_source}")
    result = preprocess_data(data_source, eval_fraction=eval_fraction, seed=seed, limit=limit)
    write_jsonl(result.eval_rows, eval_set.path)
    write_jsonl(result.train_rows, train_set.path)
    eval_set.metadata.update(
        {
            "rows": len(result.eval_rows),
            "digest": result.digest,
            "dropped_duplicates": result.dropped_duplicates,
            "reference_free": result.reference_free,
        }
    )
    train_set.metadata.update({"rows": len(result.train_rows)})
    if result.ignored_columns:
        print(f"preprocess_data: ignored columns {result.ignored_columns}")
    return namedtuple("PreprocessOutputs", ["dataset_digest", "n_eval"])(result.digest, len(result.eval_rows))
