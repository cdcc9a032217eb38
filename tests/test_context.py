"""The model's context is a checked limit (real SmolLM2 tokenizer and chat template, 8,192 tokens)."""

import pytest

from champion.cache import ExampleCache
from champion.errors import DataError
from generation.batch import generate_answers
from generation.cached import cached_generator
from generation.context import context_limit
from prompts import load_prompt

PROMPT = load_prompt("qa-concise")
LONG = ("Please summarise the following. " + "The quick brown fox jumps over the lazy dog. " * 967)[
    :43_530
]  # the reported 43,530 characters
EXAMPLES = [
    {"id": "short-1", "question": "What is the capital of France?", "reference": "Paris"},
    {"id": "too-long", "question": LONG, "reference": "a fox"},
    {"id": "short-2", "question": "What is 2 + 2?", "reference": "4"},
]


def generator(smollm2, tmp_path):
    return cached_generator(
        "transformers",
        str(smollm2.path),
        ExampleCache(str(tmp_path / "cache")),
        {"model_digest": smollm2.digest},
        batch_size=2,
    )


def test_the_limit_comes_from_the_models_config(smollm2):
    assert len(LONG) == 43_530 and context_limit(smollm2.path) == 8192


def test_an_overflowing_example_fails_the_step_before_anything_is_generated(smollm2, tmp_path):
    backend = generator(smollm2, tmp_path)
    with pytest.raises(
        DataError,
        match=r"1 example\(s\) do not fit the model's context of 8192 tokens with room for max_tokens=32: too-long \(\d{4,5} tokens\)",
    ) as info:
        generate_answers(EXAMPLES, PROMPT, backend, model_path=str(smollm2.path))
    assert "--context-overflow skip" in info.value.fix
    assert backend._generator is None  # the model was never loaded: nothing was generated


def test_skip_leaves_the_example_out_and_says_so(smollm2, tmp_path):
    run = generate_answers(
        EXAMPLES, PROMPT, generator(smollm2, tmp_path), model_path=str(smollm2.path), context_overflow="skip"
    )
    assert (
        [r["id"] for r in run.rows] == ["short-1", "short-2"]
        and run.skipped == ["too-long"]
        and run.context_limit == 8192
    )
    assert all(r["prompt_tokens"] + PROMPT.decoding.max_tokens <= 8192 for r in run.rows)


def test_an_unknown_policy_is_a_clear_error(smollm2, tmp_path):
    with pytest.raises(DataError, match="unknown context overflow policy 'truncate'"):
        generate_answers(
            EXAMPLES, PROMPT, generator(smollm2, tmp_path), model_path=str(smollm2.path), context_overflow="truncate"
        )
