"""Pins: what a mutable input holds, fixed once at the start of a run and checked by the step that reads it,
so KFP's step cache (keyed on parameters) can never serve a result computed from other content."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from champion.data import pin_data
from champion.errors import ConfigError
from champion.pinning import PinMismatch, check_pin, pin_hf_model, pin_path, unpinned
from champion.weights import pin_model
from evaluators.run_inputs import pin_run_inputs
from tests.conftest import REPO


def test_a_file_pin_follows_its_bytes_and_nothing_else(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text('{"question": "q", "reference": "r"}\n')
    first = pin_path(data)
    assert first.startswith("sha256:") and pin_path(data) == first
    data.touch()  # a new mtime, same bytes
    assert pin_path(data) == first
    data.write_text('{"question": "q2", "reference": "r"}\n')
    assert pin_path(data) != first


@settings(max_examples=30, deadline=None)
@given(
    files=st.dictionaries(
        st.from_regex(r"[a-z]{1,8}\.json", fullmatch=True), st.binary(max_size=64), min_size=1, max_size=5
    ),
    flip=st.integers(0, 4),
)
def test_a_folder_pin_changes_when_any_file_changes(tmp_path_factory, files, flip):
    folder = tmp_path_factory.mktemp("model")
    for name, content in files.items():
        (folder / name).write_bytes(content)
    before = pin_path(folder)
    name = sorted(files)[flip % len(files)]
    (folder / name).write_bytes(files[name] + b"!")
    assert pin_path(folder) != before
    (folder / name).write_bytes(files[name])
    assert pin_path(folder) == before


def test_a_changed_input_fails_the_step_that_reads_it(tmp_path):
    data = tmp_path / "eval.jsonl"
    data.write_text('{"question": "q", "reference": "r"}\n')
    pinned = pin_data(str(data))
    check_pin(pinned, pin_data(str(data)), "evaluation set")
    data.write_text('{"question": "edited", "reference": "r"}\n')
    with pytest.raises(PinMismatch, match="evaluation set changed after this run started"):
        check_pin(pinned, pin_data(str(data)), "evaluation set")
    check_pin(unpinned(), pin_data(str(data)), "evaluation set")  # an input that cannot be pinned is simply read again


def test_the_preprocess_step_refuses_data_edited_after_the_pin(tmp_path):
    from components.preprocess_data import preprocess_data_op

    data = tmp_path / "eval.jsonl"
    data.write_text('{"question": "q", "reference": "r"}\n')
    pinned = pin_data(str(data))
    data.write_text('{"question": "edited", "reference": "r"}\n')
    with pytest.raises(PinMismatch):
        preprocess_data_op.python_func(
            data_source=str(data), data_pin=pinned, eval_fraction=1.0, seed=0, limit=0, eval_set=None, train_set=None
        )


def test_packaged_names_pin_their_files():
    from champion.data import DEMO_DATA
    from champion.weights import packaged_gguf

    assert pin_data("demo") == pin_path(DEMO_DATA)
    assert pin_model("smollm2") == pin_path(packaged_gguf("smollm2"))


def test_a_hub_model_pins_to_its_commit(tmp_path, monkeypatch):
    import huggingface_hub.constants

    commit = "0123456789abcdef0123456789abcdef01234567"
    assert pin_hf_model(f"hf://org/model@{commit}") == f"hf:{commit}"
    refs = tmp_path / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert pin_hf_model("hf://org/model") == f"hf:{commit}"
    assert pin_hf_model("hf://org/other").startswith("unpinned:")  # not in the cache: the fetch step says so


def test_run_inputs_carry_configs_as_content_and_check_them_together():
    pins = pin_run_inputs(
        data_source="demo",
        model_source="smollm2",
        prompt="qa-concise",
        evaluator_config="default",
        gate_config="default",
        drift_reference="demo",
    )
    assert json.loads(pins.prompt)["name"] == "qa-concise" and json.loads(pins.gate_config)["name"] == "default"
    assert json.loads(pins.evaluator_config)["judge"]["model"] and pins.judge.startswith("sha256:")
    assert (
        pins.data.startswith("sha256:")
        and pins.model.startswith("sha256:")
        and pins.drift_reference.startswith("sha256:")
    )
    with pytest.raises(ConfigError, match="does not fit the evaluator config"):
        pin_run_inputs(
            data_source="demo",
            model_source="smollm2",
            prompt="qa-concise",
            evaluator_config=str(REPO / "tests/configs/lean-evaluators.yaml"),
            gate_config="default",
            drift_reference="demo",
        )
