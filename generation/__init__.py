"""Generation backends behind one interface.

``batch_generate``, the judge and the local server all generate through a ``Generator``: a list of
chat conversations in, one ``Generation`` per conversation out, in the same order.
"""

from __future__ import annotations

import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, Sequence

from champion.errors import BackendError
from prompts import Decoding

Conversation = Sequence[dict[str, str]]
ADAPTER_DIR = "lora-adapter"  # a LoRA adapter kept beside its base weights (fine_tune with merge_adapter=False)


@dataclass(frozen=True)
class Generation:
    text: str
    finish_reason: str  # "stop" (end of sequence or a stop string) or "length" (hit max_tokens)
    prompt_tokens: int
    completion_tokens: int
    # Seconds of generation attributed to this answer: its batch's wall time shared by the batch's
    # answers. Measured once, when generated; a cached answer keeps the latency it was generated with.
    latency_s: float = 0.0


@dataclass(frozen=True)
class ChoiceScores:
    """A constrained choice: the log-probability of each allowed label as the next token, and what it cost
    (one forward pass over ``prompt_tokens``; nothing is generated)."""

    logprobs: dict[str, float]
    prompt_tokens: int


class Generator(Protocol):
    name: str

    def generate(self, conversations: Sequence[Conversation], decoding: Decoding) -> list[Generation]: ...


class ChoiceScorer(Generator, Protocol):
    """A backend that also scores a fixed set of labels as the next token (the judge's constrained choice)."""

    def choice_logprobs(
        self, conversations: Sequence[Conversation], choices: Sequence[str], prefix: str
    ) -> list[ChoiceScores]: ...


# The only registry of backends. Values are "module:Class", imported on demand so that the CPU
# image never needs vLLM and the GPU image never pays for what it does not use.
BACKENDS = {
    "transformers": "generation.transformers_backend:TransformersGenerator",
    "vllm": "generation.vllm_backend:VllmGenerator",
    "openai": "generation.openai_backend:OpenAIChatGenerator",
}


def engine_options(
    backend: str,
    *,
    batch_size: int = 0,
    tensor_parallel_size: int = 1,
    max_num_seqs: int = 256,
    gpu_memory_utilization: float = 0.9,
) -> dict:
    """The options a backend takes from the pipeline's generation parameters (the vLLM engine's only for vLLM)."""
    options: dict = {"batch_size": batch_size}
    if backend == "vllm":
        options.update(
            tensor_parallel_size=tensor_parallel_size,
            max_num_seqs=max_num_seqs,
            gpu_memory_utilization=gpu_memory_utilization,
        )
    return options


def get_generator(backend: str, model_path: str | Path, **options: Any) -> Generator:
    """A generation backend, imported only when asked for (the CPU image never needs vLLM).

    Args:
        backend: ``transformers``, ``vllm`` or ``openai`` (an OpenAI-compatible endpoint).
        model_path: A safetensors folder (as ``fetch_weights`` writes), or for ``openai`` the served model's name.
        **options: The backend's own settings, e.g. ``batch_size``, or vLLM's engine settings from ``engine_options``.

    Returns:
        A ``Generator``: ``generate(conversations, decoding)`` gives one ``Generation`` per conversation, in order.

    Raises:
        BackendError: An unknown backend name (with a suggestion).
    """
    if backend not in BACKENDS:
        close = difflib.get_close_matches(backend, BACKENDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BackendError(f"unknown generation backend {backend!r}.", f"{hint}choose one of {sorted(BACKENDS)}.")
    module_name, class_name = BACKENDS[backend].split(":")
    generator_class = getattr(importlib.import_module(module_name), class_name)
    return generator_class(str(model_path), **options)
