"""A Generator that answers from the per-example cache and builds the real backend only on a miss.

``identity`` names what determines the output besides the inputs (the model digest and backend, or an
endpoint and model name); a cached generation is keyed by it, the conversation and every decoding
field, so an unchanged example is never generated twice, and a run where everything hits never even
loads the model.
"""

from __future__ import annotations

import importlib
import time
import typing
from typing import Callable, Sequence

from champion.cache import ExampleCache
from generation import BACKENDS, ChoiceScorer, ChoiceScores, Conversation, Generation, Generator, get_generator
from prompts import Decoding


class CachedGenerator:
    """Misses are generated ``chunk`` at a time (or the backend's ``batch_size``, when larger) and each chunk
    is cached as soon as it is done, so a step killed midway keeps what it finished and its re-run starts from
    there."""

    def __init__(
        self,
        factory: Callable[[], Generator],
        cache: ExampleCache,
        identity: dict,
        name: str = "cached",
        chunk: int = 16,
    ) -> None:
        self._factory = factory
        self.chunk = max(1, chunk)
        self._generator: Generator | None = None
        self.cache = cache
        self.identity = identity
        self.name = name
        # Work actually done (misses), apart from what the cache answered: throughput is measured on it only.
        self.computed = 0
        self.computed_seconds = 0.0
        self._spent_tokens = {"prompt_tokens": 0, "completion_tokens": 0}

    @property
    def spent(self) -> dict[str, int]:
        """What the misses cost the backend (a cached answer costs nothing): one call each, and their tokens."""
        return {"calls": self.computed, **self._spent_tokens}

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = self._factory()
        return self._generator

    def _cached(
        self,
        kind: str,
        keys: list[str],
        conversations: Sequence[Conversation],
        compute: Callable[[list[Conversation]], list[dict]],
    ) -> list[dict]:
        """Values for ``keys``: hits from the cache, misses computed ``chunk`` at a time and stored at once."""
        found = self.cache.get_many(kind, keys)
        missing = [i for i, key in enumerate(keys) if key not in found]
        # A backend that sizes its own batches (a GPU) gets at least a batch's worth per chunk.
        chunk = max(self.chunk, int(getattr(self.generator, "batch_size", 0) or 0)) if missing else self.chunk
        for start in range(0, len(missing), chunk):
            part = missing[start : start + chunk]
            started = time.perf_counter()
            new = dict(zip((keys[i] for i in part), compute([conversations[i] for i in part])))
            self.computed_seconds += time.perf_counter() - started
            self.computed += len(part)
            for value in new.values():
                for tokens in self._spent_tokens:
                    self._spent_tokens[tokens] += int(value.get(tokens) or 0)
            self.cache.put_many(kind, new)
            found.update(new)
        return [found[key] for key in keys]

    def generate(self, conversations: Sequence[Conversation], decoding: Decoding) -> list[Generation]:
        # "v2": entries carry the latency they were generated with; older entries (without it) are not reused.
        keys = [
            self.cache.key("generation", "v2", self.identity, list(c), decoding.model_dump(mode="json"))
            for c in conversations
        ]
        return [
            Generation(**value)
            for value in self._cached(
                "generation", keys, conversations, lambda part: timed_generate(self.generator, part, decoding)
            )
        ]


def timed_generate(generator: Generator, conversations: Sequence[Conversation], decoding: Decoding) -> list[dict]:
    """Generate one batch and share its wall time among its answers (``latency_s``)."""
    started = time.perf_counter()
    generations = generator.generate(conversations, decoding)
    share = (time.perf_counter() - started) / max(len(generations), 1)
    return [vars(g) | {"latency_s": g.latency_s or share} for g in generations]


class CachedChoiceGenerator(CachedGenerator):
    """For backends that score a fixed set of labels (the judge's constrained choice)."""

    def _scorer(self) -> ChoiceScorer:
        generator = self.generator
        if not hasattr(generator, "choice_logprobs"):
            raise TypeError(f"the {self.name} backend cannot score choices")
        return typing.cast(ChoiceScorer, generator)

    def choice_logprobs(
        self, conversations: Sequence[Conversation], choices: Sequence[str], prefix: str
    ) -> list[ChoiceScores]:
        # "v2": entries carry the prompt tokens of their forward pass (the judge's cost).
        keys = [self.cache.key("choice", "v2", self.identity, list(c), list(choices), prefix) for c in conversations]
        return [
            ChoiceScores(**value)
            for value in self._cached(
                "choice",
                keys,
                conversations,
                lambda part: [vars(scores) for scores in self._scorer().choice_logprobs(part, choices, prefix)],
            )
        ]


def cached_generator(backend: str, model_path: str, cache: ExampleCache, identity: dict, **options) -> CachedGenerator:
    """``get_generator`` behind the cache: the backend is built lazily, on the first miss."""
    if backend not in BACKENDS:
        get_generator(backend, model_path)  # raises the typed error, with a suggestion
    module_name, class_name = BACKENDS[backend].split(":")
    backend_class = getattr(importlib.import_module(module_name), class_name)
    wrapper = CachedChoiceGenerator if hasattr(backend_class, "choice_logprobs") else CachedGenerator
    return wrapper(
        lambda: get_generator(backend, model_path, **options),
        cache,
        {"backend": backend, **identity},
        name=backend,
        chunk=options.get("batch_size") or 16,
    )
