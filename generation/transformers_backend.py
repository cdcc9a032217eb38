"""Batched generation with transformers: CPU or GPU, left padding, safetensors only."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Sequence

from champion.errors import BackendError
from generation import ADAPTER_DIR, ChoiceScores, Conversation, Generation
from generation.sizing import CPU_BATCH, DEFAULT_CAP, KVShape, gpu_batch_size
from prompts import Decoding

log = logging.getLogger(__name__)


class TransformersGenerator:
    name = "transformers"

    def __init__(
        self, model_path: str, *, batch_size: int = 0, device: str | None = None, trust_remote_code: bool = False
    ) -> None:
        """``batch_size``: on a CPU the batch (0 = 16); on a GPU the most sequences in one batch (0 = up to 256),
        each batch sized from free memory and its prompts (generation/sizing.py)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 0:
            raise BackendError(
                f"batch_size must be 0 (sized for the device) or positive, got {batch_size}.",
                "pass a positive batch size, or 0.",
            )
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size or (CPU_BATCH if self.device == "cpu" else DEFAULT_CAP)
        # Left padding keeps every prompt's last token next to the first generated one, so batched
        # and one-by-one greedy decoding give the same text.
        # Any: transformers types apply_chat_template and .to() for every input shape at once, too loosely to check.
        self.tokenizer: Any = AutoTokenizer.from_pretrained(
            model_path, padding_side="left", trust_remote_code=trust_remote_code
        )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.tokenizer.chat_template is None:
            raise BackendError(
                f"the tokenizer in {model_path} has no chat template.", "use an instruction-tuned model that ships one."
            )
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16  # bf16 is ~3x slower than fp32 on CPUs
        loaded: Any = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=dtype, use_safetensors=True, trust_remote_code=trust_remote_code
        )
        self.model: Any = loaded.to(self.device)
        adapter = Path(model_path) / ADAPTER_DIR
        if adapter.is_dir():  # a LoRA adapter kept beside its base: merge it once at load
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, adapter).merge_and_unload()
        self.model.eval()
        self._torch = torch
        self._kv_shape = KVShape.of(self.model.config, 4 if dtype == torch.float32 else 2)

    def _batch_for(self, prompts: Sequence[str], new_tokens: int) -> int:
        """The batch for these prompts: ``batch_size`` on a CPU; on a GPU what fits in free memory for the
        longest of them (at most ``batch_size``)."""
        if self.device == "cpu":
            return self.batch_size
        longest = max(len(self.tokenizer(p, add_special_tokens=False).input_ids) for p in prompts)
        free, _ = self._torch.cuda.mem_get_info(self.device)
        size = gpu_batch_size(
            free, self._kv_shape, longest_prompt=longest, max_new_tokens=new_tokens, cap=self.batch_size
        )
        log.info("batch of %d sequences (%d prompt tokens at most, %.1f GiB free)", size, longest, free / 2**30)
        return size

    def generate(self, conversations: Sequence[Conversation], decoding: Decoding) -> list[Generation]:
        prompts = [
            self.tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True)
            for conv in conversations
        ]
        # Sorting by length puts similar prompts in one batch (less padding); results go back in input order.
        order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
        results: list[Generation | None] = [None] * len(prompts)
        size = self._batch_for(prompts, decoding.max_tokens) if prompts else 1
        for start in range(0, len(order), size):
            batch = order[start : start + size]
            for index, generation in zip(batch, self._generate_batch([prompts[i] for i in batch], decoding)):
                results[index] = generation
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[str], decoding: Decoding) -> list[Generation]:
        torch = self._torch
        encoded = self.tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        sampling = decoding.temperature > 0
        kwargs = dict(max_new_tokens=decoding.max_tokens, do_sample=sampling, pad_token_id=self.tokenizer.pad_token_id)
        if sampling:
            kwargs.update(temperature=decoding.temperature, top_p=decoding.top_p)
            torch.manual_seed(decoding.seed)
        else:
            # Greedy: unset the sampling knobs a model's generation_config may carry, so they do not warn or apply.
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if decoding.stop:
            kwargs.update(stop_strings=list(decoding.stop), tokenizer=self.tokenizer)
        if self.device != "cpu":
            # A static KV cache (compiled forward) halves the per-step overhead that bounds GPU decoding
            # (2.2x plain generate at batch 256 on an H200, shared/notes/gpu.md); on CPUs it does not pay.
            kwargs.update(cache_implementation="static")
        with torch.inference_mode():
            output = self.model.generate(**encoded, **kwargs)
        prompt_width = encoded["input_ids"].shape[1]
        prompt_tokens = encoded["attention_mask"].sum(dim=1).tolist()
        eos_ids = self._eos_ids()
        generations = []
        for row, n_prompt in zip(output[:, prompt_width:].tolist(), prompt_tokens):
            completion = []
            finish_reason = "length"
            for token in row:
                if token in eos_ids:
                    finish_reason = "stop"
                    break
                completion.append(token)
            text = self.tokenizer.decode(completion, skip_special_tokens=True)
            for stop in decoding.stop:
                if stop in text:
                    text, finish_reason = text.split(stop, 1)[0], "stop"
            generations.append(
                Generation(
                    text=text.strip(),
                    finish_reason=finish_reason,
                    prompt_tokens=int(n_prompt),
                    completion_tokens=len(completion),
                )
            )
        return generations

    def choice_logprobs(
        self, conversations: Sequence[Conversation], choices: Sequence[str], prefix: str
    ) -> list[ChoiceScores]:
        """Log-probability of each choice as the next token after ``prefix`` in the assistant turn.

        One forward pass per batch instead of free generation: the judge's verdict is constrained to
        the allowed labels and cannot be unparseable.
        """
        torch = self._torch
        first_tokens = {}
        for choice in choices:
            ids = self.tokenizer.encode(choice, add_special_tokens=False)
            first_tokens[choice] = ids[0]
        if len(set(first_tokens.values())) != len(choices):
            raise BackendError(
                f"the labels {list(choices)} share a first token in this tokenizer.",
                "use labels that start differently.",
            )
        prompts = [
            self.tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True)
            + prefix.rstrip()
            + " "
            for conv in conversations
        ]
        results: list[ChoiceScores] = []
        size = self._batch_for(prompts, 1) if prompts else 1
        for start in range(0, len(prompts), size):
            encoded = self.tokenizer(
                prompts[start : start + size], return_tensors="pt", padding=True, add_special_tokens=False
            ).to(self.device)
            with torch.inference_mode():
                logits = self.model(**encoded).logits[:, -1, :].float()
            logprobs = torch.log_softmax(logits, dim=-1)
            for row, length in zip(logprobs, encoded["attention_mask"].sum(dim=1).tolist()):
                results.append(
                    ChoiceScores({choice: float(row[token]) for choice, token in first_tokens.items()}, int(length))
                )
        return results

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids
