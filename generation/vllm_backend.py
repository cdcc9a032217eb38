"""Offline batch generation with vLLM (the GPU image). Every sampling field is set explicitly,
because vLLM's own defaults (temperature 1.0, max_tokens 16) differ from the model's and the server's."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from champion.errors import BackendError
from generation import ADAPTER_DIR, Conversation, Generation
from prompts import Decoding


def sampling_kwargs(decoding: Decoding) -> dict:
    """The full SamplingParams for one decoding config; kept pure so it is tested without vLLM."""
    return dict(
        n=1,
        temperature=decoding.temperature,
        top_p=decoding.top_p,
        top_k=0,  # 0 disables top-k (vLLM >= 0.2x; -1 is the older spelling)
        min_p=0.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        repetition_penalty=1.0,
        max_tokens=decoding.max_tokens,
        seed=decoding.seed,
        stop=list(decoding.stop),
        skip_special_tokens=True,
    )


def engine_kwargs(
    model_path: str,
    *,
    tensor_parallel_size: int = 1,
    gpu_memory_utilization: float = 0.90,
    max_num_seqs: int = 256,
    max_model_len: int = 4096,
    trust_remote_code: bool = False,
) -> dict:
    """Everything passed to ``vllm.LLM``; kept pure so the API contract test reads it without vLLM."""
    kwargs = dict(
        model=model_path,
        tensor_parallel_size=tensor_parallel_size,
        gpu_memory_utilization=gpu_memory_utilization,
        max_num_seqs=max_num_seqs,
        max_model_len=max_model_len,
        trust_remote_code=trust_remote_code,
        dtype="auto",
        seed=0,
    )
    adapter = Path(model_path) / ADAPTER_DIR
    if adapter.is_dir():  # fine_tune kept a LoRA adapter beside the base weights
        rank = int(json.loads((adapter / "adapter_config.json").read_text())["r"])
        kwargs.update(enable_lora=True, max_lora_rank=max(8, rank), max_loras=1)
    return kwargs


def chat_kwargs(lora_request=None) -> dict:
    """Keyword arguments of ``LLM.chat`` besides the conversations and sampling parameters."""
    return dict(use_tqdm=False, lora_request=lora_request, add_generation_prompt=True)


class VllmGenerator:
    name = "vllm"

    def __init__(
        self,
        model_path: str,
        *,
        batch_size: int = 0,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.90,
        max_num_seqs: int = 256,
        max_model_len: int = 4096,
        trust_remote_code: bool = False,
        device: str | None = None,
    ) -> None:
        try:
            from vllm import LLM
        except ImportError as exc:
            raise BackendError(
                "the vllm backend needs the vllm package, which is not installed here.",
                "run batch_generate in the GPU image (pip install 'champion[vllm]'), or use backend 'transformers'.",
            ) from exc
        # vLLM schedules its own batches (up to max_num_seqs); batch_size and device are accepted for parity.
        self.batch_size = max_num_seqs  # the cache hands it this many misses at a time
        kwargs = engine_kwargs(
            model_path,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_num_seqs=max_num_seqs,
            max_model_len=max_model_len,
            trust_remote_code=trust_remote_code,
        )
        self.lora_request = None
        if kwargs.get("enable_lora"):
            from vllm.lora.request import LoRARequest

            self.lora_request = LoRARequest("champion-adapter", 1, str(Path(model_path) / ADAPTER_DIR))
        self.llm = LLM(**kwargs)

    def generate(self, conversations: Sequence[Conversation], decoding: Decoding) -> list[Generation]:
        from vllm import SamplingParams

        outputs = self.llm.chat(
            [list(c) for c in conversations],
            SamplingParams(**sampling_kwargs(decoding)),
            **chat_kwargs(self.lora_request),
        )
        return [
            Generation(
                text=out.outputs[0].text.strip(),
                finish_reason="length" if out.outputs[0].finish_reason == "length" else "stop",
                prompt_tokens=len(out.prompt_token_ids or []),
                completion_tokens=len(out.outputs[0].token_ids),
            )
            for out in outputs
        ]
