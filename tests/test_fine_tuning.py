"""Fine-tuning through TRL's SFTTrainer with peft, on the real SmolLM2-135M on CPU, a few steps.

Proven here: the loss is on the answer only (the trainer's own completion mask), the held-out loss falls,
merged weights and a kept adapter both serve, a 4-bit base without a GPU is a clear error, and the trainer
logs its losses to a real (sqlite) MLflow. Not proven here (no GPU): bf16, gradient checkpointing and the
4-bit base on a GPU node."""

from __future__ import annotations

import json

import pytest

from champion.errors import DataError, ModelSourceError
from champion.jsonl import read_jsonl
from champion.weights import verify_weights
from prompts import load_prompt
from training.fine_tuning import (
    FINE_TUNING_EXPERIMENT,
    FineTuneSettings,
    fine_tune,
    held_out,
    sft_trainer,
    training_examples,
)

PROMPT = load_prompt("qa-concise")
ROWS = read_jsonl("pipelines/data/demo_eval.jsonl")[:16]


def test_the_loss_is_on_the_answer_only(smollm2, tmp_path):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2.path)
    model = AutoModelForCausalLM.from_pretrained(smollm2.path)
    examples = training_examples(PROMPT, ROWS[:2])
    trainer = sft_trainer(
        model,
        tokenizer,
        Dataset.from_list(examples),
        None,
        FineTuneSettings(steps=1),
        str(tmp_path),
        ["q_proj", "v_proj"],
        "test",
    )
    batch = trainer.data_collator([trainer.train_dataset[0]])  # what the loss sees
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    scored = tokenizer.decode(ids[labels != -100], skip_special_tokens=True).strip()
    assert scored == ROWS[0]["reference"]  # the reference (and the end of turn), not a token of the prompt
    assert int((labels != -100).sum()) < len(ids) / 4


def test_a_few_steps_on_cpu_lower_the_held_out_loss_and_the_merged_weights_serve(smollm2, tmp_path):
    from generation.transformers_backend import TransformersGenerator

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = fine_tune(
        smollm2.path,
        tmp_path / "tuned",
        ROWS,
        PROMPT,
        FineTuneSettings(steps=8, merge_adapter=True, mlflow_tracking_uri=tracking),
    )
    assert result.trained and result.digest != smollm2.digest and verify_weights(result.path) == result.digest
    assert len(result.losses) == 8 and result.eval_examples >= 1
    assert result.eval_loss_after < result.eval_loss_before  # the held-out answers got likelier
    record = json.loads((result.path / "champion-fine-tune.json").read_text())
    assert record["trainer"].startswith("trl.SFTTrainer") and record["merged"] and not record["load_in_4bit"]
    answer = TransformersGenerator(str(result.path), device="cpu").generate(
        [PROMPT.render(question=ROWS[0]["question"])], PROMPT.decoding
    )[0]
    assert answer.text and answer.completion_tokens > 0
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking)
    experiment = client.get_experiment_by_name(FINE_TUNING_EXPERIMENT)
    (run,) = client.search_runs([experiment.experiment_id])
    history = client.get_metric_history(run.info.run_id, "loss")
    assert len(history) == 8 and run.data.params["learning_rate"] == "0.0002"


def test_a_kept_adapter_leaves_the_base_files_untouched(smollm2, tmp_path):
    result = fine_tune(smollm2.path, tmp_path / "tuned", ROWS, PROMPT, FineTuneSettings(steps=2, merge_adapter=False))
    assert (result.path / "lora-adapter" / "adapter_config.json").is_file()
    base = smollm2.path / "model.safetensors"
    assert (result.path / "model.safetensors").read_bytes() == base.read_bytes()


def test_a_four_bit_base_needs_a_gpu_and_bitsandbytes(smollm2, tmp_path):
    with pytest.raises(ModelSourceError, match="4-bit base \\(QLoRA\\) needs a CUDA GPU") as info:
        fine_tune(smollm2.path, tmp_path / "tuned", ROWS, PROMPT, FineTuneSettings(steps=1, load_in_4bit=True))
    assert "load_in_4bit off" in info.value.fix


def test_the_held_out_share_is_seeded_disjoint_and_never_empties_training():
    train, evaluation = held_out(ROWS, 0.25, seed=3)
    assert evaluation and train and not {r["id"] for r in train} & {r["id"] for r in evaluation}
    assert held_out(ROWS, 0.25, seed=3) == (train, evaluation)
    assert held_out(ROWS[:1], 0.5, seed=0) == (ROWS[:1], [])
    with pytest.raises(DataError, match="lacks column"):
        training_examples(PROMPT, [{"id": "x", "reference": "y"}])


def test_the_mlflow_run_leaves_an_unset_tracking_uri_unset(tmp_path, monkeypatch):
    """An unset tracking URI stays unset after fine-tuning's MLflow run: restoring it to MLflow's relative
    default exported MLFLOW_TRACKING_URI=sqlite:///mlflow.db to every later process (an mlflow.db in the checkout)."""
    import os

    import mlflow

    from training.fine_tuning import _mlflow_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    mlflow.set_tracking_uri(None)
    with _mlflow_run(f"sqlite:///{tmp_path / 'mlflow.db'}", "unset-stays-unset") as run:
        assert run is not None and mlflow.get_tracking_uri().endswith(f"{tmp_path}/mlflow.db")
    assert not mlflow.is_tracking_uri_set() and "MLFLOW_TRACKING_URI" not in os.environ

    given = f"sqlite:///{tmp_path / 'given.db'}"
    mlflow.set_tracking_uri(given)
    with _mlflow_run(f"sqlite:///{tmp_path / 'mlflow.db'}", "set-stays-set"):
        pass
    assert mlflow.get_tracking_uri() == given == os.environ["MLFLOW_TRACKING_URI"]
    mlflow.set_tracking_uri(None)
