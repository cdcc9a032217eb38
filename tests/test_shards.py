"""Sharding: the parts cover the evaluation set exactly once, in order, and merging the parts' score tables
gives back the unsharded table and its means (properties, hypothesis)."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from champion.errors import ConfigError
from champion.shards import check_shards, shard_bounds, shard_rows
from evaluators import aggregate
from evaluators.scores import merge_scored

BUNDLE_A = json.dumps({"model_digest": "a", "prompt": "p"})
BUNDLE_B = json.dumps({"prompt": "p", "model_digest": "b"})


@settings(max_examples=200, deadline=None)
@given(n=st.integers(0, 500), shards=st.integers(1, 64))
def test_the_parts_cover_every_row_once_in_order_and_differ_by_at_most_one(n, shards):
    rows = [{"id": str(i)} for i in range(n)]
    parts = [shard_rows(rows, shard, shards) for shard in range(shards)]
    assert [row for part in parts for row in part] == rows
    sizes = [len(part) for part in parts]
    assert max(sizes) - min(sizes) <= 1
    assert shard_bounds(n, 0, shards)[0] == 0 and shard_bounds(n, shards - 1, shards)[1] == n


@settings(max_examples=100, deadline=None)
@given(
    scores=st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=60),
    champion=st.lists(st.floats(0, 1, allow_nan=False), min_size=2, max_size=60),
    shards=st.integers(1, 8),
)
def test_merging_the_parts_gives_back_the_unsharded_table_and_means(scores, champion, shards):
    shards = min(shards, len(scores), len(champion))
    tables, bundles, metrics = [], [], []
    for bundle, values in ((BUNDLE_A, scores), (BUNDLE_B, champion)):
        rows = [{"id": str(i), "token_f1": v} for i, v in enumerate(values)]
        for shard in range(shards):
            part = shard_rows(rows, shard, shards)
            tables.append(part)
            bundles.append(bundle)
            metrics.append({"token_f1": aggregate(part, "token_f1"), "judge_spent_calls": 2.0})
    challenger, champ = merge_scored(bundles, tables, metrics, shards=shards)
    assert [r["token_f1"] for r in challenger.table] == scores and [r["token_f1"] for r in champ.table] == champion
    assert challenger.metrics["token_f1"] == pytest.approx(math.fsum(scores) / len(scores))  # never a mean of means
    assert challenger.metrics["judge_spent_calls"] == 2.0 * shards  # counts add up
    assert (challenger.first, champ.first) == (0, shards)


def test_a_bundle_is_recognised_whatever_its_key_order_and_bad_shards_are_clear_errors():
    (merged,) = merge_scored(
        [BUNDLE_A, json.dumps(json.loads(BUNDLE_A), indent=1)], [[{"id": "1"}], [{"id": "2"}]], [{}, {}], shards=2
    )
    assert [r["id"] for r in merged.table] == ["1", "2"]
    # A challenger identical to the champion (a re-run of the live bundle) is still two bundles: by position.
    challenger, champion = merge_scored([BUNDLE_A, BUNDLE_A], [[{"id": "1"}], [{"id": "1"}]], [{}, {}], shards=1)
    assert challenger.table == champion.table == [{"id": "1"}]
    with pytest.raises(ValueError, match="another bundle"):
        merge_scored([BUNDLE_A, BUNDLE_B], [[{"id": "1"}], [{"id": "2"}]], [{}, {}], shards=2)
    with pytest.raises(ConfigError, match="more than the 3 evaluation examples"):
        check_shards(4, 3)
    with pytest.raises(ConfigError, match="does not exist"):
        shard_bounds(10, 3, 3)
