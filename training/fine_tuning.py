"""fine_tune: LoRA on the training split, on a GPU node (a few steps on the CPU for tests).

The adapter is trained by TRL's ``SFTTrainer`` with a peft ``LoraConfig`` on top of the fetched weights:
each training example is a prompt-completion conversation (the bundle's own prompt template renders the
prompt, the reference is the assistant's completion), so the loss is on the answer tokens only. On a GPU
the base is loaded in bf16 with gradient checkpointing, or in 4 bits (QLoRA, ``load_in_4bit``) where
bitsandbytes is installed; on a CPU in fp32. A held-out share of the training split gives the evaluation
loss before and after training; with an MLflow tracking URI the trainer logs its parameters and every
step's loss there (experiment ``champion-fine-tuning``). The adapter is then
merged into plain safetensors for serving, or kept beside the base weights as a LoRA adapter
(``merge_adapter=False``; vLLM and the transformers backend load it). Either way the output folder
gets a fresh sha256 manifest, so the bundle's model digest names exactly the tuned weights.

``steps=0`` means "fetch only": the fetched weights pass through unchanged (same files, same digest).
kfp.local cannot choose between artifacts made in different branches, so the pipeline keeps this
step in the chain instead of a conditional.
"""

import json
import random
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from champion.data import split
from champion.digests import sha256_json
from champion.errors import DataError, ModelSourceError
from champion.weights import KEEP_SUFFIXES, MANIFEST_NAME, place_files, verify_weights, write_manifest
from generation import ADAPTER_DIR
from prompts import PromptTemplate

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the attention projections of Llama-style models


FINE_TUNING_EXPERIMENT = "champion-fine-tuning"


@dataclass
class FineTuneSettings:
    steps: int = 0
    learning_rate: float = 2e-4
    lora_rank: int = 8
    lora_alpha: int = 16
    batch_size: int = 4
    merge_adapter: bool = True
    seed: int = 0
    eval_fraction: float = 0.1  # of the training split, held out for the evaluation loss (at least one example)
    load_in_4bit: bool = False  # QLoRA: a 4-bit base (bitsandbytes, GPU); the adapter is kept, never merged
    mlflow_tracking_uri: str = ""  # the trainer logs parameters and losses there when set


@dataclass
class FineTuneResult:
    path: Path
    digest: str
    trained: bool
    train_examples: int = 0
    losses: list[float] = field(default_factory=list)
    eval_examples: int = 0
    eval_loss_before: float | None = None
    eval_loss_after: float | None = None
    seconds: float = 0.0


def training_examples(prompt: PromptTemplate, rows: list[dict]) -> list[dict]:
    """Prompt-completion conversations (TRL's format): the rendered prompt, then the reference as the
    assistant's answer. TRL computes the loss on the completion only."""
    examples = []
    for row in rows:
        missing = [v for v in prompt.variables if v not in row]
        if missing:
            raise DataError(
                f"training example {row.get('id')!r} lacks column(s) {missing} that prompt {prompt.name} needs.",
                "add them to the data, or fine-tune with a prompt that does not need them.",
            )
        examples.append(
            {
                "prompt": prompt.render(**{v: row[v] for v in prompt.variables}),
                "completion": [{"role": "assistant", "content": row["reference"]}],
            }
        )
    return examples


def held_out(rows: list[dict], fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, eval): a seeded share of the training split held out for the evaluation loss; none when there is
    only one example."""

    if len(rows) < 2 or fraction <= 0:
        return rows, []
    evaluation, train = split(rows, fraction, seed)
    if not evaluation:
        evaluation, train = train[:1], train[1:]
    if not train:
        train, evaluation = evaluation[:1], evaluation[1:]
    return train, evaluation


def sft_trainer(model, tokenizer, train_set, eval_set, settings: FineTuneSettings, scratch: str, targets, name: str):
    """TRL's SFTTrainer with a LoRA adapter on ``targets``: completion-only loss, bf16 and gradient
    checkpointing on a GPU, a constant learning rate, a log entry per step, nothing saved in ``scratch``."""
    import torch
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    gpu = torch.cuda.is_available()
    return SFTTrainer(
        model=model,
        args=SFTConfig(
            output_dir=scratch,
            max_steps=settings.steps,
            per_device_train_batch_size=settings.batch_size,
            per_device_eval_batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            lr_scheduler_type="constant",
            warmup_steps=0,
            seed=settings.seed,
            data_seed=settings.seed,
            bf16=gpu,
            gradient_checkpointing=gpu,
            use_cpu=not gpu,
            completion_only_loss=True,
            logging_steps=1,
            save_strategy="no",
            eval_strategy="no",
            report_to=["mlflow"] if settings.mlflow_tracking_uri else [],
            run_name=name,
            disable_tqdm=True,
            dataloader_pin_memory=gpu,
        ),
        train_dataset=train_set,
        eval_dataset=eval_set,
        processing_class=tokenizer,
        peft_config=LoraConfig(
            r=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_dropout=0.0,
            target_modules=targets,
            task_type="CAUSAL_LM",
        ),
    )


def _load_base(base_dir: Path, settings: FineTuneSettings, device: str):
    import torch
    from transformers import AutoModelForCausalLM

    if settings.load_in_4bit:
        import importlib.util

        if device == "cpu" or importlib.util.find_spec("bitsandbytes") is None:
            raise ModelSourceError(
                "a 4-bit base (QLoRA) needs a CUDA GPU and the bitsandbytes package"
                + (", and this step has no GPU." if device == "cpu" else ", which is not installed."),
                "run fine_tune on a GPU node with bitsandbytes installed, or set load_in_4bit off.",
            )
        from transformers import BitsAndBytesConfig

        quantization = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_compute_dtype=torch.bfloat16,
            bnb_4bit_use_double_quant=True,
        )
        import os

        return AutoModelForCausalLM.from_pretrained(
            base_dir,
            quantization_config=quantization,
            use_safetensors=True,
            device_map={"": int(os.environ.get("LOCAL_RANK", "0"))},  # each process its own GPU
        )
    dtype = torch.bfloat16 if device != "cpu" else torch.float32  # bf16 is ~3x slower than fp32 on CPUs
    return AutoModelForCausalLM.from_pretrained(base_dir, dtype=dtype, use_safetensors=True)


def _check_training_inputs(prompt: PromptTemplate | None, train_rows: list[dict], settings: FineTuneSettings) -> None:
    if prompt is None:
        raise DataError(
            "fine-tuning needs the bundle's prompt to format its training examples.",
            "pass the prompt (pin_inputs' training_prompt) when fine_tune_steps > 0.",
        )
    if not train_rows:
        raise DataError(
            "fine-tuning needs a training split, and this one is empty.",
            "set eval_fraction below 1 (e.g. 0.8) so preprocess_data keeps examples for training.",
        )
    if settings.lora_rank < 1 or settings.learning_rate <= 0 or settings.batch_size < 1:
        raise DataError(
            f"bad fine-tune settings: rank {settings.lora_rank}, learning rate {settings.learning_rate}, batch size {settings.batch_size}.",
            "use rank >= 1, a positive learning rate and batch size >= 1.",
        )


def _save_tuned(model, tokenizer, base_dir: Path, out_dir: Path, merge: bool) -> None:
    """The tuned weights in ``out_dir``: merged into the base, or the base beside its adapter; nothing else."""
    model.eval()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    if merge:
        # Saved in the dtype the base was stored in: a bf16 base trained on a GPU stays bf16, SmolLM2 stays fp32.
        model.merge_and_unload().to(_stored_dtype(base_dir)).save_pretrained(out_dir, safe_serialization=True)
        tokenizer.save_pretrained(out_dir)
        for extra in ("chat_template.jinja", "generation_config.json"):
            if (base_dir / extra).is_file() and not (out_dir / extra).is_file():
                shutil.copy2(base_dir / extra, out_dir / extra)
    else:
        place_files([p for p in base_dir.rglob("*") if p.is_file() and p.name != MANIFEST_NAME], base_dir, out_dir)
        model.save_pretrained(str(out_dir / ADAPTER_DIR), safe_serialization=True)
    for stray in [p for p in out_dir.rglob("*") if p.is_file() and p.suffix not in KEEP_SUFFIXES]:
        stray.unlink()  # e.g. peft's README.md: fetch_weights would drop it and the digest would change


def fine_tune(
    base_dir: str | Path,
    out_dir: str | Path,
    train_rows: list[dict],
    prompt: PromptTemplate | None,
    settings: FineTuneSettings,
) -> FineTuneResult:
    """LoRA on ``train_rows`` formatted with ``prompt``; ``settings.steps == 0`` passes the weights through (no prompt needed)."""
    base_dir, out_dir = Path(base_dir), Path(out_dir)
    base_digest = verify_weights(base_dir)
    if settings.steps < 0:
        raise DataError(
            f"fine-tune steps must be 0 (fetch only) or positive, got {settings.steps}.", "pass fine_tune_steps >= 0."
        )
    if settings.steps == 0:
        files = [p for p in base_dir.rglob("*") if p.is_file()]
        place_files(files, base_dir, out_dir)
        return FineTuneResult(out_dir, base_digest, trained=False)
    _check_training_inputs(prompt, train_rows, settings)
    assert prompt is not None
    from datasets import Dataset

    merge = settings.merge_adapter and not settings.load_in_4bit  # a 4-bit base is never merged into
    model, tokenizer, targets = _load_for_training(base_dir, settings)
    train_rows, eval_rows = held_out(train_rows, settings.eval_fraction, settings.seed)
    train_set = Dataset.from_list(training_examples(prompt, train_rows))
    eval_set = Dataset.from_list(training_examples(prompt, eval_rows)) if eval_rows else None
    run = _train(model, tokenizer, train_set, eval_set, settings, targets, f"fine-tune {base_digest[:12]}")
    losses = [round(float(entry["loss"]), 4) for entry in run.trainer.state.log_history if "loss" in entry]
    if not run.trainer.is_world_process_zero():  # data-parallel (a TrainJob's other processes): rank 0 writes
        return FineTuneResult(out_dir, "", trained=True, train_examples=len(train_rows), losses=losses)
    _save_tuned(run.trainer.model, tokenizer, base_dir, out_dir, merge)
    processes = int(run.trainer.args.world_size)  # data-parallel processes (a TrainJob's nodes x processes per node)
    record = {
        "base_digest": base_digest,
        "steps": settings.steps,
        "learning_rate": settings.learning_rate,
        "lora_rank": settings.lora_rank,
        "lora_alpha": settings.lora_alpha,
        "merged": merge,
        "load_in_4bit": settings.load_in_4bit,
        "trainer": "trl.SFTTrainer (completion-only loss)",
        "processes": processes,
        "seed": settings.seed,
        "train_examples": len(train_rows),
        "eval_examples": len(eval_rows),
        "eval_loss_before": run.before,
        "eval_loss_after": run.after,
        "losses": losses,
    }
    (out_dir / "champion-fine-tune.json").write_text(json.dumps(record, indent=2) + "\n")
    return FineTuneResult(
        out_dir,
        sha256_json(write_manifest(out_dir)),
        trained=True,
        train_examples=len(train_rows),
        losses=losses,
        eval_examples=len(eval_rows),
        eval_loss_before=run.before,
        eval_loss_after=run.after,
        seconds=run.seconds,
    )


def _load_for_training(base_dir: Path, settings: FineTuneSettings) -> tuple[Any, Any, list[str]]:
    """(model, tokenizer, LoRA target modules), seeded, on the GPU when there is one."""
    import torch
    from transformers import AutoTokenizer

    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = _load_base(base_dir, settings, device)
    targets = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(LORA_TARGETS))
    if not targets:
        raise ModelSourceError(
            f"the model in {base_dir} has none of the attention projections LoRA targets ({LORA_TARGETS}).",
            "fine-tune a Llama-style causal LM, or fetch weights without fine-tuning (fine_tune_steps=0).",
        )
    return model, tokenizer, targets


@dataclass
class _TrainingRun:
    trainer: Any
    before: float | None  # evaluation loss on the held-out share, None without one
    after: float | None
    seconds: float


def _train(
    model, tokenizer, train_set, eval_set, settings: FineTuneSettings, targets: list[str], name: str
) -> _TrainingRun:
    """Train, with the held-out loss before and after, in one MLflow run when a tracking URI is set."""
    import time

    with (
        tempfile.TemporaryDirectory(prefix="champion-sft-") as scratch,
        _mlflow_run(settings.mlflow_tracking_uri, name) as run,
    ):
        trainer = sft_trainer(model, tokenizer, train_set, eval_set, settings, scratch, targets, name)
        before = trainer.evaluate()["eval_loss"] if eval_set is not None else None
        started = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - started
        after = trainer.evaluate()["eval_loss"] if eval_set is not None else None
        if run is not None and before is not None and after is not None:
            import mlflow

            mlflow.log_metrics({"eval_loss_before": before, "eval_loss_after": after, "train_seconds": seconds})
    return _TrainingRun(trainer, before, after, seconds)


def _stored_dtype(base_dir: Path):
    import torch

    config = json.loads((base_dir / "config.json").read_text(encoding="utf-8"))
    name = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return getattr(torch, name, torch.float32)


@contextmanager
def _mlflow_run(tracking_uri: str, name: str):
    """One MLflow run for the whole fine-tuning (experiment ``champion-fine-tuning``): transformers' MLflow
    callback logs the trainer's parameters and each step's loss into the active run; the evaluation losses
    are added by ``fine_tune``. Nothing without a tracking URI."""
    if not tracking_uri:
        yield None
        return
    import mlflow

    # Restored exactly afterwards: unset stays unset. get_tracking_uri() on an unset URI answers MLflow's
    # relative default (sqlite:///mlflow.db), and setting that back exported it to every later process,
    # which then wrote an mlflow.db into whatever folder it ran in (the checkout, in the test suite).
    previous = mlflow.get_tracking_uri() if mlflow.is_tracking_uri_set() else None
    mlflow.set_tracking_uri(tracking_uri)  # the callback logs through the fluent API
    try:
        client = mlflow.MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(FINE_TUNING_EXPERIMENT)
        experiment = found.experiment_id if found else client.create_experiment(FINE_TUNING_EXPERIMENT)
        with mlflow.start_run(run_name=name, experiment_id=experiment) as run:
            yield run
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None unsets it (and MLFLOW_TRACKING_URI)
