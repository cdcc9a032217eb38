"""The per-example score table, the aggregates computed from it, and a sharded run's parts merged back."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Sequence

from evaluators.base import Evaluator


def score_examples(records: Sequence[dict], evaluators: Sequence[Evaluator]) -> list[dict]:
    """Score every record with every evaluator.

    Args:
        records: One dict per example: ``id``, ``question``, ``reference``, ``output`` (and ``context`` for the
            metrics that read it).
        evaluators: Built evaluators (``SemanticSimilarity()``, ``TokenF1()``, or ``build_metrics(config)``).

    Returns:
        The score table ``decide`` takes: one row per record, its ``id`` plus one column per metric.
    """
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


@dataclass
class Scored:
    """One bundle's merged results: its bundle JSON, score rows, means and (when given) generations."""

    bundle: str
    table: list[dict]
    metrics: dict[str, float]
    generations: list[dict]
    first: int = 0  # the index of its first part in the collected lists


def _identity(bundle: str) -> str:
    return json.dumps(json.loads(bundle), sort_keys=True)


def merge_scored(
    bundles: list[str],
    tables: list[list[dict]],
    metrics: list[dict],
    generations: list[list[dict]] | None = None,
    *,
    shards: int = 1,
) -> list[Scored]:
    """Each bundle's ``shards`` consecutive parts, merged (bundle-major input, as the scoring loop collects it).
    Grouped by position, never by equality: a challenger identical to the champion is still two bundles."""
    if not (len(bundles) == len(tables) == len(metrics)) or (
        generations is not None and len(generations) != len(bundles)
    ):
        raise ValueError(
            f"{len(bundles)} bundles, {len(tables)} score tables and {len(metrics)} metric sets do not line up"
        )
    if shards < 1 or len(bundles) % shards:
        raise ValueError(f"{len(bundles)} parts are not whole bundles of {shards} shards")
    merged: list[Scored] = []
    for index, bundle in enumerate(bundles):
        if index % shards:
            target = merged[-1]
            if _identity(target.bundle) != _identity(bundle):
                raise ValueError(f"part {index} scored another bundle than the parts before it: the loop's order broke")
        else:
            target = Scored(bundle, [], {}, [], first=index)
            merged.append(target)
        target.table.extend(tables[index])
        target.generations.extend((generations or [[]] * len(bundles))[index])
        for key, value in metrics[index].items():  # counts (judge spent, cache hits) add up; means are redone below
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                target.metrics[key] = target.metrics.get(key, 0.0) + float(value)
    for scored in merged:
        columns = {key for row in scored.table for key in row}
        for key in list(scored.metrics):
            if key in columns:
                value = aggregate(scored.table, key)
                if math.isfinite(value):
                    scored.metrics[key] = value
                else:
                    del scored.metrics[key]  # as an unsharded run: a NaN mean is in the table, not in the metrics
    return merged
