"""Sharded generation and scoring: the evaluation set in K contiguous parts, scored in parallel, merged back.

The pipeline's scoring loop runs over (bundle, shard) pairs; each pair generates and scores its part of the
evaluation set (``shard_rows``). The steps after the loop receive every part, bundle-major and in shard
order, and ``merge_scored`` puts each bundle's parts back together: the same rows in the same order as an
unsharded run, and the means recomputed from the merged table (never a mean of means).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from champion.errors import ConfigError


def shard_bounds(n: int, shard: int, shards: int) -> tuple[int, int]:
    """[start, end) of ``shard`` when ``n`` rows are split into ``shards`` contiguous parts whose sizes differ by at
    most one (the first ``n % shards`` parts are one longer)."""
    if shards < 1 or not 0 <= shard < shards:
        raise ConfigError(f"shard {shard} of {shards} does not exist.", "shards must be >= 1 and 0 <= shard < shards.")
    size, extra = divmod(n, shards)
    start = shard * size + min(shard, extra)
    return start, start + size + (1 if shard < extra else 0)


def shard_rows(rows: list[dict], shard: int, shards: int) -> list[dict]:
    start, end = shard_bounds(len(rows), shard, shards)
    return rows[start:end]


def check_shards(shards: int, examples: int) -> None:
    if shards > examples:
        raise ConfigError(
            f"shards={shards} is more than the {examples} evaluation examples: some parts would be empty.",
            f"use at most {examples} shards (or more data).",
        )


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
    from evaluators import aggregate

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
