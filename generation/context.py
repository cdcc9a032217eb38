"""The model's context is a checked limit: every rendered prompt, plus room for ``max_tokens``, must fit.

Measured with the model's own tokenizer and chat template (the tokenizer only: no weights load), on
every example before any generation, so an example that would be truncated or overflow is reported
by id instead of being answered wrongly and scored as if nothing happened. The policy decides:
``fail`` stops the run naming the examples; ``skip`` leaves them out and says how many.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from champion.errors import DataError
from generation import Conversation

ContextPolicy = Literal["fail", "skip"]
CONTEXT_POLICIES = ("fail", "skip")
_LIMIT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "max_sequence_length")


def context_limit(model_path: str | Path) -> int | None:
    """The context length a model folder declares (config.json), or None when it says nothing."""
    config_path = Path(model_path) / "config.json"
    if not config_path.is_file():
        return None
    config = json.loads(config_path.read_text(encoding="utf-8"))
    sources = [config, config.get("text_config") or {}]
    for source in sources:
        for key in _LIMIT_KEYS:
            value = source.get(key)
            if isinstance(value, int) and value > 0:
                return value
    return None


@dataclass
class ContextReport:
    limit: int | None
    max_tokens: int
    prompt_tokens: list[int] = field(default_factory=list)
    overflowing: list[tuple[str, int]] = field(default_factory=list)  # (example id, prompt tokens)

    @property
    def checked(self) -> bool:
        return self.limit is not None


def prompt_tokens(tokenizer: Any, conversation: Conversation) -> int:
    """Tokens of a conversation as the model sees it: its chat template, with the generation prompt."""
    rendered = tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)
    return len(tokenizer(rendered, add_special_tokens=False)["input_ids"])


def measure(
    model_path: str | Path,
    conversations: Sequence[Conversation],
    ids: Sequence[str],
    max_tokens: int,
    *,
    trust_remote_code: bool = False,
) -> ContextReport:
    """Prompt tokens of every conversation as the model will see them, against its context."""
    limit = context_limit(model_path)
    report = ContextReport(limit, max_tokens)
    if limit is None:
        return report
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_path), trust_remote_code=trust_remote_code)
    for example_id, conversation in zip(ids, conversations, strict=True):
        count = prompt_tokens(tokenizer, conversation)
        report.prompt_tokens.append(count)
        if count + max_tokens > limit:
            report.overflowing.append((str(example_id), count))
    return report


def enforce(report: ContextReport, policy: str) -> set[str]:
    """The ids to leave out (``skip``), or a DataError naming every example that does not fit (``fail``)."""
    if policy not in CONTEXT_POLICIES:
        raise DataError(f"unknown context overflow policy {policy!r}.", f"use one of {list(CONTEXT_POLICIES)}.")
    if not report.overflowing:
        return set()
    shown = ", ".join(f"{example_id} ({tokens} tokens)" for example_id, tokens in report.overflowing[:5])
    more = f" and {len(report.overflowing) - 5} more" if len(report.overflowing) > 5 else ""
    if policy == "fail":
        raise DataError(
            f"{len(report.overflowing)} example(s) do not fit the model's context of {report.limit} tokens with room for max_tokens={report.max_tokens}: {shown}{more}.",
            "shorten or drop those examples, use a model with a longer context, or run with context_overflow=skip (--context-overflow skip) to leave them out and count them.",
        )
    return {example_id for example_id, _ in report.overflowing}
