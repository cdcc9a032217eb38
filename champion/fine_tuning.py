"""fine_tune: LoRA on the training split, on a GPU node (a few steps on the CPU for tests).

The adapter is trained with peft on top of the fetched weights, using the bundle's own prompt
template for the inputs and the references as targets (loss on the answer tokens only). It is then
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
from dataclasses import dataclass, field
from pathlib import Path

from champion.digests import sha256_json
from champion.errors import DataError, ModelSourceError
from champion.weights import KEEP_SUFFIXES, MANIFEST_NAME, place_files, verify_weights, write_manifest
from prompts import PromptTemplate
from serving.generation import ADAPTER_DIR

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the attention projections of Llama-style models


@dataclass
class FineTuneSettings:
    steps: int = 0
    learning_rate: float = 2e-4
    lora_rank: int = 8
    lora_alpha: int = 16
    batch_size: int = 4
    merge_adapter: bool = True
    seed: int = 0


@dataclass
class FineTuneResult:
    path: Path
    digest: str
    trained: bool
    train_examples: int = 0
    losses: list[float] = field(default_factory=list)


def _features(tokenizer, prompt: PromptTemplate, rows: list[dict]) -> list[tuple[list[int], list[int]]]:
    """(input ids, labels) per example: the rendered prompt, then the reference; loss on the reference only."""
    features = []
    for row in rows:
        missing = [v for v in prompt.variables if v not in row]
        if missing:
            raise DataError(
                f"training example {row.get('id')!r} lacks column(s) {missing} that prompt {prompt.name} needs.",
                "add them to the data, or fine-tune with a prompt that does not need them.",
            )
        messages = prompt.render(**{v: row[v] for v in prompt.variables})
        prompt_ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
        prompt_ids = list(
            prompt_ids["input_ids"] if isinstance(prompt_ids, dict) or hasattr(prompt_ids, "keys") else prompt_ids
        )
        answer_ids = tokenizer(row["reference"], add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
        features.append((prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids))
    return features


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
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32, use_safetensors=True).to(device)  # type: ignore[arg-type]  # transformers types .to() as a decorator wrapper
    targets = sorted({name.rsplit(".", 1)[-1] for name, _ in model.named_modules()} & set(LORA_TARGETS))
    if not targets:
        raise ModelSourceError(
            f"the model in {base_dir} has none of the attention projections LoRA targets ({LORA_TARGETS}).",
            "fine-tune a Llama-style causal LM, or fetch weights without fine-tuning (fine_tune_steps=0).",
        )
    model = get_peft_model(
        model,
        LoraConfig(
            r=settings.lora_rank,
            lora_alpha=settings.lora_alpha,
            lora_dropout=0.0,
            target_modules=targets,
            task_type="CAUSAL_LM",
        ),
    )
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=settings.learning_rate)
    features = _features(tokenizer, prompt, train_rows)
    order = list(range(len(features)))
    random.shuffle(order)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    losses = []
    model.train()
    for step in range(settings.steps):
        batch = [
            features[order[(step * settings.batch_size + i) % len(order)]]
            for i in range(min(settings.batch_size, len(order)))
        ]
        width = max(len(ids) for ids, _ in batch)
        input_ids = torch.tensor([ids + [pad] * (width - len(ids)) for ids, _ in batch], device=device)
        labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch], device=device)
        attention = torch.tensor([[1] * len(ids) + [0] * (width - len(ids)) for ids, _ in batch], device=device)
        loss = model(input_ids=input_ids, attention_mask=attention, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(round(float(loss.detach()), 4))
    model.eval()
    if out_dir.exists():
        shutil.rmtree(out_dir)
    if settings.merge_adapter:
        model.merge_and_unload().save_pretrained(out_dir, safe_serialization=True)  # type: ignore[operator]  # peft forwards it via __getattr__
        tokenizer.save_pretrained(out_dir)
        for extra in ("chat_template.jinja", "generation_config.json"):
            if (base_dir / extra).is_file() and not (out_dir / extra).is_file():
                shutil.copy2(base_dir / extra, out_dir / extra)
    else:
        place_files([p for p in base_dir.rglob("*") if p.is_file() and p.name != MANIFEST_NAME], base_dir, out_dir)
        model.save_pretrained(str(out_dir / ADAPTER_DIR), safe_serialization=True)
    for stray in [p for p in out_dir.rglob("*") if p.is_file() and p.suffix not in KEEP_SUFFIXES]:
        stray.unlink()  # e.g. peft's README.md: fetch_weights would drop it and the digest would change
    (out_dir / "champion-fine-tune.json").write_text(
        json.dumps(
            {
                "base_digest": base_digest,
                "steps": settings.steps,
                "learning_rate": settings.learning_rate,
                "lora_rank": settings.lora_rank,
                "lora_alpha": settings.lora_alpha,
                "merged": settings.merge_adapter,
                "seed": settings.seed,
                "train_examples": len(features),
                "losses": losses,
            },
            indent=2,
        )
        + "\n"
    )
    return FineTuneResult(
        out_dir, sha256_json(write_manifest(out_dir)), trained=True, train_examples=len(features), losses=losses
    )
