"""One input layer: valid files read right, bad ones are clear errors, never a traceback.

The CLI cases run the real `champion` command (typer's runner, in process); the fuzz tests feed the
real loaders hundreds of generated inputs per family and accept exactly two outcomes: a correct read
or a ChampionError.
"""

from __future__ import annotations

import json
import math
import os
import socket
import string
import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from champion.data import load_rows, preprocess_data
from champion.errors import ChampionError, DataError
from champion.inputs import has_visible_text
from pipelines.cli import app
from tests.conftest import REPO

runner = CliRunner()


def cli(*args: str):
    result = runner.invoke(app, list(args))
    assert "Traceback" not in (result.output or ""), result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result


# -- valid files read right ---------------------------------------------------------------------


def test_csv_values_are_read_as_the_exact_text_written(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('id,question,reference\n007,How many?,3.0\n7,"Quoted, with comma",042\n', encoding="utf-8")
    rows = load_rows(str(path))
    assert [r["id"] for r in rows] == ["007", "7"]  # leading zeros keep their own id
    assert [r["reference"] for r in rows] == ["3.0", "042"]  # a numeric reference is text, whatever the quoting
    result = preprocess_data(str(path))
    assert {r["id"] for r in result.eval_rows} == {"007", "7"}


def test_json_lines_split_on_newline_only_and_a_bom_is_accepted_everywhere(tmp_path):
    line_separator = "What is\u2028this?"  # U+2028 inside a value: str.splitlines() would cut the line here
    path = tmp_path / "data.jsonl"
    path.write_bytes(
        (
            "\ufeff" + json.dumps({"question": line_separator, "reference": "a\x85b"}, ensure_ascii=False) + "\r\n"
        ).encode("utf-8")
    )
    rows = load_rows(str(path))
    assert rows == [{"question": line_separator, "reference": "a\x85b"}]
    csv_path = tmp_path / "data.csv"
    csv_path.write_bytes("\ufeffquestion,reference\nq,r\n".encode("utf-8"))
    assert load_rows(str(csv_path)) == [
        {"question": "q", "reference": "r"}
    ]  # the BOM is not part of the first column's name


def test_csv_tags_may_be_a_json_list(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text('question,reference,tags\nq,r,"[""math"", ""easy""]"\n', encoding="utf-8")
    assert preprocess_data(str(path)).eval_rows[0]["tags"] == ["easy", "math"]


# -- garbage refused ------------------------------------------------------------------------------


def test_a_reference_of_invisible_characters_is_empty(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps({"question": "q?", "reference": "\u200b\u200d\ufeff\u2060"}) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="row 1, column 'reference' holds only invisible characters"):
        preprocess_data(str(path))
    assert has_visible_text("a\u200b") and not has_visible_text("\u200b \u00a0\t")


def test_csv_with_too_many_fields_names_the_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("question,reference\nq,r,extra\n", encoding="utf-8")
    with pytest.raises(DataError, match="line 2: 3 fields, but the header has 2"):
        load_rows(str(path))


def test_a_missing_cached_hub_dataset_says_it_is_not_cached():
    with pytest.raises(DataError, match="not in the local Hugging Face cache") as info:
        load_rows("hf://datasets/nobody/never-cached-champion-test")
    assert "never downloads" in info.value.problem and "save_to_disk" in info.value.fix


def test_a_malformed_model_config_names_the_file(tmp_path):
    from champion.errors import ModelSourceError
    from champion.weights import fetch_weights

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama",', encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(ModelSourceError, match=r"config.json is not valid JSON \(line 1, column"):
        fetch_weights(str(folder), tmp_path / "out")


# -- the CLI: every user mistake is a clear error with exit 2 -----------------------------------


def test_lint_fails_on_a_missing_or_empty_prompt_folder(tmp_path):
    missing = cli("lint", "--prompts-dir", str(tmp_path / "nowhere"))
    assert missing.exit_code == 2 and "does not exist" in missing.output
    (tmp_path / "empty").mkdir()
    empty = cli("lint", "--prompts-dir", str(tmp_path / "empty"))
    assert empty.exit_code == 2 and "holds no prompt versions" in empty.output
    locked = cli("lock", "--prompts-dir", str(tmp_path / "nowhere"))
    assert locked.exit_code == 2 and "does not exist" in locked.output


def test_files_that_are_not_utf8_are_located(tmp_path):
    prompts = tmp_path / "prompts" / "qa-latin"
    prompts.mkdir(parents=True)
    (prompts / "v1.yaml").write_bytes(
        "name: qa-latin\nversion: 1\nvariables: [question]\nmessages:\n  - {role: user, content: 'Caf\xe9 {{ question }}'}\n".encode(
            "latin-1"
        )
    )
    linted = cli("lint", "--prompts-dir", str(tmp_path / "prompts"))
    assert linted.exit_code == 1 and "line 5, column" in linted.output and "not UTF-8" in linted.output
    locked = cli("lock", "--prompts-dir", str(tmp_path / "prompts"))
    assert locked.exit_code == 2 and "not UTF-8" in locked.output
    ran = cli("run", "--prompt", str(prompts / "v1.yaml"), "--workspace", str(tmp_path / "ws"))
    assert ran.exit_code == 2 and "line 5, column" in ran.output
    policy = tmp_path / "policy.yaml"
    policy.write_bytes("name: p\u00e9\n".encode("latin-1"))
    ran = cli("run", "--gate-config", str(policy), "--workspace", str(tmp_path / "ws"))
    assert ran.exit_code == 2 and "line 1, column 8: not UTF-8" in ran.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch-size", "-1"], "parameter batch_size: Input should be greater than or equal to 0 (got -1)"),
        (["--param", "shards=0"], "parameter shards: Input should be greater than or equal to 1"),
        (["--eval-fraction", "nan"], "parameter eval_fraction: Input should be a finite number"),
        (["--eval-fraction", "0"], "parameter eval_fraction: Input should be greater than 0"),
        (["--limit", "-3"], "parameter limit: Input should be greater than or equal to 0"),
        (["--fine-tune-steps", "-1"], "parameter fine_tune_steps: Input should be greater than or equal to 0"),
        (["--registered-model-name", "qa' or name='x"], "is not a plain name"),
    ],
)
def test_bad_numbers_and_names_are_refused_before_anything_runs(tmp_path, args, message):
    result = cli("run", "--workspace", str(tmp_path / "ws"), *args)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "ws").exists()


def test_a_workspace_that_is_a_file_is_refused(tmp_path):
    (tmp_path / "ws").write_text("not a folder")
    result = cli("run", "--workspace", str(tmp_path / "ws"))
    assert result.exit_code == 2 and "workspace" in result.output and "is a file, not a folder" in result.output


def test_manifests_refuse_a_bad_namespace_and_an_output_that_is_a_file(tmp_path):
    bad = cli("manifests", "--namespace", "Bad_NS!", "--output", str(tmp_path / "k8s"))
    assert (
        bad.exit_code == 2
        and "namespace 'Bad_NS!' is not a valid DNS-1123 label" in bad.output
        and not (tmp_path / "k8s").exists()
    )
    (tmp_path / "file").write_text("x")
    onto_file = cli("manifests", "--namespace", "team-a", "--output", str(tmp_path / "file"))
    assert onto_file.exit_code == 2 and "is a file, not a folder" in onto_file.output


def test_serve_on_a_busy_port_says_so_before_serving(tmp_path):
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "mlflow.db").write_bytes(b"")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("serve", "--workspace", str(tmp_path / "ws"), "--port", str(port))
    assert (
        result.exit_code == 2
        and f"port {port} on 127.0.0.1, the server's, is already in use" in result.output
        and "Serving on" not in result.output
    )


def test_the_audit_commit_is_known_outside_the_checkout(tmp_path):
    from champion.provenance import git_commit as _git_commit

    here = os.getcwd()
    os.chdir(tmp_path)
    try:
        commit = _git_commit()
    finally:
        os.chdir(here)
    expected = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert commit.removesuffix("-dirty") == expected and len(expected) == 40  # -dirty: tracked files changed


# -- fuzz: a clear error or a correct read, never a traceback ---------------------------------------

FUZZ = settings(
    max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
text_values = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=st.characters(categories=["Cc", "Cf", "Zs", "Zl", "Zp"]), max_size=8),
    st.sampled_from(["", " ", "\u200b", "007", "3.0", "-0"]),
)
json_values = st.one_of(
    text_values,
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(st.text(max_size=5), max_size=3),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
rows = st.lists(
    st.dictionaries(
        st.sampled_from(["id", "question", "reference", "context", "tags", "other"]), json_values, max_size=6
    ),
    min_size=0,
    max_size=6,
)


def _read_or_clear_error(path: Path) -> None:
    try:
        result = preprocess_data(str(path))
    except ChampionError as exc:
        assert exc.problem and exc.fix, exc
        return
    for row in result.eval_rows:  # a correct read: the contract every later step relies on
        assert isinstance(row["id"], str) and row["id"]
        assert has_visible_text(row["question"]) and has_visible_text(row["reference"])
        assert all(isinstance(tag, str) for tag in row.get("tags", []))
    assert len({row["id"] for row in result.eval_rows}) == len(result.eval_rows)


@FUZZ
@given(rows, st.booleans(), st.integers(0, 40))
def test_fuzz_json_lines(tmp_path_factory, data, bom, cut):
    path = tmp_path_factory.mktemp("fuzz") / "data.jsonl"
    raw = ("\ufeff" if bom else "") + "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in data)
    encoded = raw.encode("utf-8", errors="surrogatepass")
    path.write_bytes(encoded[: len(encoded) - cut] if cut and encoded else encoded)  # truncated files too
    _read_or_clear_error(path)


@FUZZ
@given(
    st.lists(st.lists(text_values, min_size=0, max_size=4), max_size=6),
    st.sampled_from(
        ["question,reference", "id,question,reference", "question,reference,tags", "question", "question,question"]
    ),
)
def test_fuzz_csv(tmp_path_factory, cells, header):
    import csv
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer)
    buffer.write(header + "\n")
    for row in cells:
        writer.writerow(row)
    path = tmp_path_factory.mktemp("fuzz") / "data.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8", errors="surrogatepass"))
    _read_or_clear_error(path)


@FUZZ
@given(st.binary(max_size=200))
def test_fuzz_raw_bytes_as_any_data_format(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("fuzz")
    for name in ("data.jsonl", "data.csv", "data.json"):
        (folder / name).write_bytes(raw)
        _read_or_clear_error(folder / name)


yaml_scalars = st.one_of(
    st.text(max_size=20),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
)
yaml_docs = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.text(string.ascii_lowercase + "_", max_size=12), inner, max_size=5),
    ),
    max_leaves=12,
)


def _policy_like():
    metric = st.fixed_dictionaries(
        {},
        optional={
            "direction": st.sampled_from(["higher", "lower", "up"]),
            "floor": yaml_scalars,
            "margin": yaml_scalars,
            "margin_relative": yaml_scalars,
            "kind": st.sampled_from(["continuous", "binary", "other"]),
            "require_superiority": yaml_scalars,
            "compare": yaml_scalars,
        },
    )
    return st.fixed_dictionaries(
        {"name": yaml_scalars, "version": yaml_scalars, "min_examples": yaml_scalars},
        optional={
            "metrics": st.dictionaries(
                st.sampled_from(
                    ["semantic_similarity", "token_f1", "exact_match", "judge_correctness", "latency_s", "nope"]
                ),
                metric,
                max_size=3,
            ),
            "alpha": yaml_scalars,
            "multiplicity": yaml_scalars,
            "slices": st.dictionaries(
                st.text(max_size=5),
                st.dictionaries(
                    st.sampled_from(["min_examples", "margin", "floors", "metrics"]), yaml_docs, max_size=3
                ),
                max_size=2,
            ),
        },
    )


@FUZZ
@given(st.one_of(yaml_docs, _policy_like()))
def test_fuzz_gate_policies(tmp_path_factory, document):
    from evaluators.config import load_evaluator_config
    from evaluators.policy import check_against, load_policy

    path = tmp_path_factory.mktemp("fuzz") / "policy.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    try:
        policy = load_policy(str(path))
        check_against(policy, load_evaluator_config("default").metric_catalog())
    except ChampionError as exc:
        assert exc.problem and exc.fix
        return
    assert all(math.isfinite(rule.margin or 0.0) for rule in policy.metrics.values())


def _prompt_like():
    message = st.fixed_dictionaries(
        {
            "role": st.sampled_from(["system", "user", "assistant", "tool"]),
            "content": st.one_of(
                st.text(max_size=30),
                st.sampled_from(["{{ question }}", "{{ reference }}", "{{ q", "{% for %}", "{{ ''.__class__ }}"]),
            ),
        }
    )
    return st.fixed_dictionaries(
        {
            "name": st.one_of(st.sampled_from(["qa-concise", "qa-fuzz"]), st.text(max_size=8)),
            "version": yaml_scalars,
            "variables": st.lists(st.sampled_from(["question", "context", "reference", "x"]), max_size=3),
        },
        optional={
            "messages": st.lists(message, max_size=3),
            "decoding": st.dictionaries(
                st.sampled_from(["temperature", "top_p", "max_tokens", "seed", "stop"]), yaml_scalars, max_size=3
            ),
        },
    )


def _prompt_with(content: str) -> dict:
    return {"name": "qa-concise", "version": 2, "variables": [], "messages": [{"role": "user", "content": content}]}


@FUZZ
@given(st.one_of(yaml_docs, _prompt_like()), st.booleans())
# Templates that parse but can never render (found by this test in CI): refused at load, not at the first request.
@example(_prompt_with("{{0.__class__}}"), False)
@example(_prompt_with("{{0.A.0}}"), False)
def test_fuzz_prompt_files(tmp_path_factory, document, latin1):
    from prompts import load_prompt

    path = tmp_path_factory.mktemp("fuzz") / "prompt.yaml"
    text = yaml.safe_dump(document, allow_unicode=True)
    path.write_bytes(
        text.encode("latin-1", errors="replace") if latin1 else text.encode("utf-8", errors="surrogatepass")
    )
    try:
        prompt = load_prompt(str(path))
    except ChampionError as exc:
        assert exc.problem and exc.fix
        return
    assert set(prompt.variables) <= {"question", "context"}  # a prompt that loads can be served
    prompt.render(**{v: "x" for v in prompt.variables})


@FUZZ
@given(
    st.one_of(
        yaml_docs,
        st.fixed_dictionaries(
            {
                "name": yaml_scalars,
                "version": yaml_scalars,
                "metrics": st.lists(
                    st.sampled_from(
                        ["semantic_similarity", "token_f1", "ragas_bleu", "ragas_answer_accuracy", "bogus"]
                    ),
                    max_size=4,
                ),
            }
        ),
    )
)
def test_fuzz_evaluator_configs(tmp_path_factory, document):
    from evaluators.config import load_evaluator_config

    path = tmp_path_factory.mktemp("fuzz") / "evaluators.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    try:
        config = load_evaluator_config(str(path))
    except ChampionError as exc:
        assert exc.problem and exc.fix
        return
    assert config.metric_catalog()


@FUZZ
@given(st.one_of(st.binary(max_size=80), yaml_docs.map(lambda d: json.dumps(d).encode())))
def test_fuzz_model_folder_config(tmp_path_factory, config):
    from champion.weights import fetch_weights

    folder = tmp_path_factory.mktemp("fuzz")
    model = folder / "model"
    model.mkdir()
    (model / "config.json").write_bytes(config)
    (model / "model.safetensors").write_bytes(b"\0" * 8)
    try:
        fetch_weights(str(model), folder / "out")
    except ChampionError as exc:
        assert exc.problem and exc.fix
