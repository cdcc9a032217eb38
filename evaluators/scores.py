"""The per-example score table and the aggregates computed from it."""

from __future__ import annotations

import math
from typing import Sequence

from evaluators.base import Evaluator


def score_examples(records: Sequence[dict], evaluators: Sequence[Evaluator]) -> list[dict]:
    """One row per record: its id plus one column per metric."""
    table = [{"id": r["id"]} for r in records]
    for evaluator in evaluators:
        for row, value in zip(table, evaluator.score(records), strict=True):
            row[evaluator.spec.name] = value
    return table


def aggregate(table: Sequence[dict], metric: str) -> float:
    """Mean over the table. Missing or non-finite values make the aggregate NaN, which fails the gate."""
    values = [row.get(metric) for row in table]
    finite = [float(v) for v in values if v is not None and math.isfinite(v)]
    if not values or len(finite) != len(values):
        return math.nan
    return math.fsum(finite) / len(finite)
