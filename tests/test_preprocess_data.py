import json

import pytest

from champion.data import DEMO_DATA, preprocess_data, split
from champion.errors import DataError

ROWS = [
    {"question": "What is  the capital\nof France?", "reference": " Paris "},
    {"question": "What is 2 plus 2?", "reference": "4", "tags": ["math"]},
    {"question": "Who wrote Hamlet?", "reference": "Shakespeare", "id": "hamlet"},
]


def test_demo_set_is_large_enough_and_clean():
    result = preprocess_data("demo")
    assert len(result.eval_rows) >= 60
    assert result.dropped_duplicates == 0
    assert len({r["id"] for r in result.eval_rows}) == len(result.eval_rows)
    assert DEMO_DATA.is_file()


def test_normalises_whitespace_and_assigns_stable_ids(write_jsonl):
    result = preprocess_data(str(write_jsonl(ROWS)))
    by_ref = {r["reference"]: r for r in result.eval_rows}
    assert by_ref["Paris"]["question"] == "What is the capital of France?"
    assert by_ref["Shakespeare"]["id"] == "hamlet"
    assert by_ref["4"]["tags"] == ["math"]
    again = preprocess_data(str(write_jsonl(ROWS, "copy.jsonl")))
    assert again.digest == result.digest


def test_drops_exact_duplicates_after_normalisation(write_jsonl):
    rows = ROWS + [{"question": "What is the capital of France?", "reference": "Paris"}]
    result = preprocess_data(str(write_jsonl(rows)))
    assert result.dropped_duplicates == 1
    assert len(result.eval_rows) == 3


def test_only_duplicates_leaves_one_row(write_jsonl):
    result = preprocess_data(str(write_jsonl([ROWS[1]] * 5)))
    assert len(result.eval_rows) == 1 and result.dropped_duplicates == 4


def test_missing_column_names_file_and_fix(write_jsonl):
    path = write_jsonl([{"question": "q", "answer": "a"}])
    with pytest.raises(DataError, match=r"lacks required column\(s\) \['reference'\]") as info:
        preprocess_data(str(path))
    assert str(path) in str(info.value) and "rename" in info.value.fix


def test_empty_file(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("")
    with pytest.raises(DataError, match="is empty"):
        preprocess_data(str(path))


def test_non_text_value_names_row_and_column(write_jsonl):
    path = write_jsonl([ROWS[0], {"question": "How many legs?", "reference": 8}])
    with pytest.raises(DataError, match=r"row 2, column 'reference': expected text, got int 8"):
        preprocess_data(str(path))


def test_empty_value_names_row(write_jsonl):
    with pytest.raises(DataError, match=r"row 1, column 'question' is empty"):
        preprocess_data(str(write_jsonl([{"question": "   ", "reference": "x"}])))


def test_invalid_json_line_is_located(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(ROWS[0]) + "\n{not json\n")
    with pytest.raises(DataError, match=r"line 2, column 2: invalid JSON"):
        preprocess_data(str(path))


def test_bad_encoding_is_located(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes(json.dumps(ROWS[0]).encode() + b'\n{"question": "caf\xe9?", "reference": "x"}\n')
    with pytest.raises(DataError, match=r"line 2, column 18: not UTF-8"):
        preprocess_data(str(path))


def test_conflicting_ids_are_an_error(write_jsonl):
    rows = [{"id": "a", "question": "q1", "reference": "r1"}, {"id": "a", "question": "q2", "reference": "r2"}]
    with pytest.raises(DataError, match="id 'a' is already used by row 1"):
        preprocess_data(str(write_jsonl(rows)))


def test_missing_file_and_unsupported_type(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        preprocess_data(str(tmp_path / "nope.jsonl"))
    (tmp_path / "data.txt").write_text("x")
    with pytest.raises(DataError, match="unsupported file type"):
        preprocess_data(str(tmp_path / "data.txt"))


def test_csv_and_parquet_and_saved_dataset(tmp_path):
    import datasets
    import pandas as pd

    frame = pd.DataFrame(ROWS[:2])[["question", "reference"]]
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    datasets.Dataset.from_pandas(frame).save_to_disk(str(tmp_path / "saved"))
    digests = {preprocess_data(str(tmp_path / name)).digest for name in ("d.csv", "d.parquet", "saved")}
    assert len(digests) == 1


def test_split_is_deterministic_disjoint_and_stable_when_rows_are_added():
    rows = [{"id": f"q{i}"} for i in range(200)]
    eval_a, train_a = split(rows, 0.5, seed=7)
    eval_b, _ = split(rows, 0.5, seed=7)
    assert eval_a == eval_b
    assert not {r["id"] for r in eval_a} & {r["id"] for r in train_a}
    assert 60 < len(eval_a) < 140
    grown, _ = split(rows + [{"id": f"new{i}"} for i in range(50)], 0.5, seed=7)
    assert {r["id"] for r in eval_a} <= {r["id"] for r in grown}
    other_seed, _ = split(rows, 0.5, seed=8)
    assert other_seed != eval_a


def test_limit_and_bad_fraction():
    assert len(preprocess_data("demo", limit=5).eval_rows) == 5
    with pytest.raises(DataError, match="eval_fraction"):
        preprocess_data("demo", eval_fraction=0.0)
    with pytest.raises(DataError, match="limit"):
        preprocess_data("demo", limit=-1)
