"""Sharded generation and scoring: the evaluation set in K contiguous parts, scored in parallel, merged back.

The pipeline's scoring loop runs over (bundle, shard) pairs; each pair generates and scores its part of the
evaluation set (``shard_rows``). The steps after the loop receive every part, bundle-major and in shard
order, and ``evaluators.scores.merge_scored`` puts each bundle's parts back together: the same rows in the same order as an
unsharded run, and the means recomputed from the merged table (never a mean of means).
"""

from __future__ import annotations

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
