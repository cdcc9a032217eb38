"""Batched generation with transformers: CPU or GPU, safetensors only.

Prompts of one batch that start alike (a chat template's system turn, a prompt's fixed opening, a rubric's
instructions) share that start: it is read once and its keys and values are repeated for every sequence, so
on a CPU, where reading prompts is compute-bound, the demo's prompts cost a third of what they did. Each
sequence is laid out as [shared prefix][padding][its own suffix]; position ids come from the attention mask,
so every token keeps the position it has when the prompt is read alone, and greedy answers are the ones of
plain left padding (tests/test_generation.py).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

from champion.errors import BackendError
from generation import ADAPTER_DIR, ChoiceScores, Conversation, Generation
from generation.sizing import DEFAULT_CAP, KVShape, available_host_memory, fitting_batch_size
from prompts import Decoding

log = logging.getLogger(__name__)

# On a CPU a forward pass that reads prompts is compute-bound, and past a few thousand tokens its activations (the
# MLP's hidden states, 1,536 wide in SmolLM2) no longer fit the processor's cache. The demo judge's grade read 71 of
# its 72 prompts in one pass (7,739 tokens past their shared start); in passes of at most 2,048 tokens (prompts
# counted in full, shared start and padding included, as _packed counts them) it took 0.79 and 0.87 of that time in
# two runs, 0.81 to 0.88 with bounds from 1,536 to 4,096 (bench/judge_batching.py, 2 cores, best of 3 each). Label
# probabilities move by 3e-6 with the batches' padding.
CPU_READ_TOKENS = 2048


class TransformersGenerator:
    name = "transformers"

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 0,
        device: str | None = None,
        trust_remote_code: bool = False,
    ) -> None:
        """``batch_size``: the most sequences in one batch (0 = up to 256), each batch sized from the device's
        free memory (the host's on a CPU) and its prompts (generation/sizing.py)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 0:
            raise BackendError(
                f"batch_size must be 0 (sized for the device) or positive, got {batch_size}.",
                "pass a positive batch size, or 0.",
            )
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.batch_size = batch_size or DEFAULT_CAP
        # The most prompt tokens (counted as _packed counts them) in one forward pass where that pass is the whole
        # work (the judge's constrained choice); unbounded on a GPU, where the cache effect was not measured.
        self.read_tokens = CPU_READ_TOKENS if self.device == "cpu" else math.inf
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
        # fp32 on a CPU: bf16 is 3x faster on CPUs that multiply it natively, but its results move with a batch's
        # padding and neighbours, and greedy answers and grades must not.
        dtype = torch.float32 if self.device == "cpu" else torch.bfloat16
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
        # Sharing a prompt prefix needs positions taken from the attention mask. Sliding-window attention counts
        # distance by index (padding between prefix and suffix would push the prefix out of the window), a model
        # whose generation config fixes its own cache cannot take one passed in, and remote code may not accept
        # position ids or a cache: those read every prompt in full, with plain left padding.
        text_config = getattr(self.model.config, "get_text_config", lambda: self.model.config)()
        sliding = getattr(text_config, "sliding_window", None) or any(
            "sliding" in str(kind) for kind in getattr(text_config, "layer_types", None) or ()
        )
        fixed_cache = self.model.generation_config.cache_implementation not in (None, "dynamic")
        self._can_share_prefix = not (sliding or fixed_cache or trust_remote_code)
        self._kv_shape = KVShape.of(self.model.config, dtype.itemsize)

    def _tokenize(self, conversations: Sequence[Conversation], suffix: str = "") -> list[list[int]]:
        """Each conversation's prompt (the chat template's, plus ``suffix``) as token ids, tokenised once."""
        prompts = [
            self.tokenizer.apply_chat_template(list(conv), tokenize=False, add_generation_prompt=True) + suffix
            for conv in conversations
        ]
        return self.tokenizer(prompts, add_special_tokens=False).input_ids

    def _batch_for(self, prompts: Sequence[list[int]], new_tokens: int) -> int:
        """The batch for these prompts: what fits in the device's free memory for the longest of them (at most
        ``batch_size``)."""
        longest = max(len(p) for p in prompts)
        if self.device == "cpu":
            free = available_host_memory()
        else:
            free, _ = self._torch.cuda.mem_get_info(self.device)
        size = fitting_batch_size(
            free, self._kv_shape, longest_prompt=longest, max_new_tokens=new_tokens, cap=self.batch_size
        )
        log.info("batch of %d sequences (%d prompt tokens at most, %.1f GiB free)", size, longest, free / 2**30)
        return size

    def _encode(self, ids: list[list[int]], share_prefix: bool) -> tuple[Any, Any, Any, int]:
        """``input_ids`` and ``attention_mask`` laid out [shared prefix][padding][suffix] (plain left padding when
        ``share_prefix`` is off or nothing is shared), the prefix's KV cache repeated for every sequence (or None),
        and the prefix's length. At least one token of every prompt stays outside the prefix: it is what the
        model reads next."""
        torch = self._torch
        shared = 0
        if share_prefix and self._can_share_prefix and len(ids) > 1:
            shortest = min(len(i) for i in ids)
            while shared < shortest - 1 and all(i[shared] == ids[0][shared] for i in ids):
                shared += 1
        width = max(len(i) for i in ids) - shared
        pad = self.tokenizer.pad_token_id
        rows, masks = [], []
        for i in ids:
            gap = width - (len(i) - shared)
            rows.append(i[:shared] + [pad] * gap + i[shared:])
            masks.append([1] * shared + [0] * gap + [1] * (len(i) - shared))
        input_ids = torch.tensor(rows, device=self.device)
        attention_mask = torch.tensor(masks, device=self.device)
        if not shared:
            return input_ids, attention_mask, None, 0
        with torch.inference_mode():
            cache = self.model(input_ids[:1, :shared], use_cache=True, logits_to_keep=1).past_key_values
        cache.batch_repeat_interleave(len(ids))
        return input_ids, attention_mask, cache, shared

    def generate(self, conversations: Sequence[Conversation], decoding: Decoding) -> list[Generation]:
        prompts = self._tokenize(conversations)
        results: list[Generation | None] = [None] * len(prompts)
        size = self._batch_for(prompts, decoding.max_tokens) if prompts else 1
        # Shortest first, in full batches: decoding re-reads every weight each step, so a fuller batch pays more
        # than the padding it adds costs; results go back in input order.
        for batch in _packed(prompts, size, waste=math.inf):
            for index, generation in zip(batch, self._generate_batch([prompts[i] for i in batch], decoding)):
                results[index] = generation
        return results  # type: ignore[return-value]

    def _generate_batch(self, prompts: list[list[int]], decoding: Decoding) -> list[Generation]:
        torch = self._torch
        # On a GPU the static KV cache (a compiled forward) is what pays (2.2x plain generate at batch 256 on an
        # H200, shared/notes/gpu.md), and reading prompts is cheap there: prompts are not shared on a GPU.
        static = self.device != "cpu"
        input_ids, attention_mask, prefix_cache, _ = self._encode(prompts, share_prefix=not static)
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
        if static:
            kwargs.update(cache_implementation="static")
        elif prefix_cache is not None:
            kwargs.update(past_key_values=prefix_cache)
        with torch.inference_mode():
            output = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        prompt_width = input_ids.shape[1]
        prompt_tokens = attention_mask.sum(dim=1).tolist()
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
        prompts = self._tokenize(conversations, suffix=prefix.rstrip() + " ")
        results: list[ChoiceScores | None] = [None] * len(prompts)
        size = self._batch_for(prompts, 1) if prompts else 1
        for batch in _packed(prompts, size, read_tokens=self.read_tokens):
            input_ids, attention_mask, prefix_cache, shared = self._encode([prompts[i] for i in batch], True)
            # The prefix's positions are in its cache; the rest are read here, at the positions the mask gives.
            positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)[:, shared:]
            with torch.inference_mode():
                logits = (
                    self.model(
                        input_ids=input_ids[:, shared:],
                        attention_mask=attention_mask,
                        position_ids=positions,
                        past_key_values=prefix_cache,
                        logits_to_keep=1,  # only the next token's distribution is read
                    )
                    .logits[:, -1, :]
                    .float()
                )
            logprobs = torch.log_softmax(logits, dim=-1)
            for index, row, length in zip(batch, logprobs, attention_mask.sum(dim=1).tolist()):
                results[index] = ChoiceScores(
                    {choice: float(row[token]) for choice, token in first_tokens.items()}, int(length)
                )
        return results  # type: ignore[return-value]

    def _eos_ids(self) -> set[int]:
        eos = self.model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos]) if eos is not None else set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(self.tokenizer.eos_token_id)
        return ids


def _packed(
    prompts: Sequence[Sequence[int]], size: int, waste: float = 1 / 8, read_tokens: float = math.inf
) -> list[list[int]]:
    """Indices of ``prompts`` in batches of at most ``size`` sequences, shortest first (each index once). A batch
    is padded to its longest, so where reading prompts is the work (the judge's one forward pass, compute-bound)
    a batch closes before its padding would exceed ``waste`` of its real tokens, or before it would hold more than
    ``read_tokens`` (padding included; a longer prompt goes alone); ``waste=math.inf`` with no ``read_tokens``
    bound fills every batch."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    batches: list[list[int]] = []
    current: list[int] = []
    real = 0
    for index in order:
        length = len(prompts[index])
        padded = (len(current) + 1) * length  # the batch's tokens with this prompt, the longest so far, in it
        if current and (len(current) >= size or padded > (1 + waste) * (real + length) or padded > read_tokens):
            batches.append(current)
            current, real = [], 0
        current.append(index)
        real += length
    return batches + [current] if current else batches
