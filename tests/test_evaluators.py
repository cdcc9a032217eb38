import math

import pytest

from evaluators import ExactMatch, SemanticSimilarity, TokenF1, aggregate, score_examples
from evaluators.lexical import normalise_answer, token_f1


def test_normalisation_and_exact_match():
    assert normalise_answer("The  Pacific Ocean!") == "pacific ocean"
    records = [{"output": "Paris.", "reference": "paris"}, {"output": "It is Paris", "reference": "Paris"}]
    assert ExactMatch().score(records) == [1.0, 0.0]


@pytest.mark.parametrize(
    "prediction, reference, expected",
    [
        ("Paris", "Paris", 1.0),
        ("The capital is Paris", "Paris", 0.5),
        ("Berlin", "Paris", 0.0),
        ("", "", 1.0),
        ("", "Paris", 0.0),
    ],
)
def test_token_f1(prediction, reference, expected):
    assert token_f1(prediction, reference) == pytest.approx(expected)


@pytest.fixture(scope="module")
def semantic():
    return SemanticSimilarity()


def test_semantic_similarity_ranks_right_above_wrong(semantic):
    records = [
        {"output": "Paris is the capital city of France.", "reference": "Paris"},
        {"output": "Berlin is a city in Germany.", "reference": "Paris"},
        {"output": "", "reference": "Paris"},
    ]
    right, wrong, empty = semantic.score(records)
    assert right > wrong + 0.2
    assert empty == 0.0
    assert all(-1.0 <= s <= 1.0 for s in (right, wrong))


def test_each_distinct_text_is_embedded_once(semantic, monkeypatch):
    seen = []
    real_encode = semantic._model.encode
    monkeypatch.setattr(semantic._model, "encode", lambda texts, **kw: seen.extend(texts) or real_encode(texts, **kw))
    semantic.score([{"output": "Paris", "reference": "Paris"}, {"output": "Paris", "reference": "Paris"}])
    assert seen == ["Paris"]


def test_score_table_and_aggregates():
    records = [
        {"id": "a", "output": "Paris", "reference": "Paris"},
        {"id": "b", "output": "Rome", "reference": "Paris"},
    ]
    table = score_examples(records, [ExactMatch(), TokenF1()])
    assert table == [{"id": "a", "exact_match": 1.0, "token_f1": 1.0}, {"id": "b", "exact_match": 0.0, "token_f1": 0.0}]
    assert aggregate(table, "exact_match") == 0.5


@pytest.mark.parametrize("table", [[], [{"m": 1.0}, {"m": math.nan}], [{"m": 1.0}, {}], [{"m": math.inf}]])
def test_aggregate_is_nan_when_anything_is_missing_or_non_finite(table):
    assert math.isnan(aggregate(table, "m"))
