"""The per-example cache: keys, atomic writes, corrupt entries, fsspec roots, and the real generator
and embedder answering from it (real SmolLM2, real all-MiniLM-L6-v2)."""

import json
import multiprocessing
from pathlib import Path

import pytest

from champion.cache import ExampleCache
from prompts import Decoding, load_prompt


def test_round_trip_and_miss(tmp_path):
    cache = ExampleCache(tmp_path)
    key = cache.key("generation", {"model_digest": "a"}, [{"role": "user", "content": "hi"}])
    assert cache.get_many("generation", [key]) == {}
    cache.put_many("generation", {key: {"text": "hello"}})
    assert cache.get_many("generation", [key]) == {key: {"text": "hello"}}
    assert cache.stats["generation.hits"] == 1 and cache.stats["generation.misses"] == 1
    assert not list(tmp_path.rglob(".tmp-*"))  # written atomically: no temporary file left behind
    assert key != cache.key("generation", {"model_digest": "b"}, [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("damage", ["truncate", "tamper", "wrong-key"])
def test_a_corrupt_entry_is_detected_and_recomputed(tmp_path, damage):
    cache = ExampleCache(tmp_path)
    key = cache.key("embedding", "model", "text")
    cache.put_many("embedding", {key: [0.1, 0.2]})
    path = next(tmp_path.rglob(f"{key}.json"))
    entry = json.loads(path.read_text())
    if damage == "truncate":
        path.write_text(path.read_text()[:20])
    elif damage == "tamper":
        path.write_text(json.dumps({**entry, "value": [0.9, 0.2]}))
    else:
        path.write_text(json.dumps({**entry, "key": "0" * 64}))
    fresh = ExampleCache(tmp_path)
    assert fresh.get_many("embedding", [key]) == {} and fresh.stats["embedding.corrupt"] == 1
    fresh.put_many("embedding", {key: [0.1, 0.2]})
    assert ExampleCache(tmp_path).get_many("embedding", [key]) == {key: [0.1, 0.2]}


def test_any_fsspec_url_works_as_the_root():
    cache = ExampleCache("memory://champion-cache-test")
    key = cache.key("choice", "x")
    cache.put_many("choice", {key: {"A": -0.1}})
    assert ExampleCache("memory://champion-cache-test").get_many("choice", [key]) == {key: {"A": -0.1}}


def _write_many(args):
    root, worker = args
    cache = ExampleCache(root)
    for i in range(200):
        cache.put_many("generation", {cache.key("shared", i): {"text": f"answer {i}"}})
    return worker


def test_several_writers_of_the_same_keys_leave_valid_entries(tmp_path):
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        pool.map(_write_many, [(str(tmp_path), 1), (str(tmp_path), 2)])
    cache = ExampleCache(tmp_path)
    keys = [cache.key("shared", i) for i in range(200)]
    assert len(cache.get_many("generation", keys)) == 200 and cache.stats["generation.corrupt"] == 0


def test_disabled_cache_is_always_a_miss():
    cache = ExampleCache("")
    cache.put_many("generation", {"k": {"text": "x"}})
    assert cache.get_many("generation", ["k"]) == {} and not cache.enabled


def test_the_generator_answers_unchanged_examples_without_loading_the_model(smollm2, tmp_path):
    from generation.cached import cached_generator

    prompt = load_prompt("qa-concise")
    conversations = [
        prompt.render(question=q) for q in ("What is the capital of France?", "What is the capital of Japan?")
    ]
    cache = ExampleCache(tmp_path)
    first = cached_generator("transformers", str(smollm2.path), cache, {"model_digest": smollm2.digest}, batch_size=2)
    computed = first.generate(conversations, prompt.decoding)
    again = cached_generator(
        "transformers", str(smollm2.path), ExampleCache(tmp_path), {"model_digest": smollm2.digest}, batch_size=2
    )
    assert again.generate(conversations, prompt.decoding) == computed
    assert again._generator is None  # every example hit: the model was never loaded
    assert hasattr(again, "choice_logprobs")  # the judge's constrained choice is cached too
    other = cached_generator(
        "transformers", str(smollm2.path), ExampleCache(tmp_path), {"model_digest": smollm2.digest}, batch_size=2
    )
    other.generate(conversations[:1], Decoding(max_tokens=5))  # another decoding is another key
    assert other.cache.stats["generation.misses"] == 1 and other._generator is not None


def test_embeddings_come_from_the_cache_with_identical_scores(tmp_path):
    from evaluators.semantic import SemanticSimilarity

    records = [
        {"output": "The capital of France is Paris.", "reference": "Paris"},
        {"output": "Tokyo", "reference": "Tokyo"},
    ]
    first = SemanticSimilarity(cache=ExampleCache(tmp_path))
    scores = first.score(records)
    second = SemanticSimilarity(cache=ExampleCache(tmp_path))
    assert second.score(records) == pytest.approx(scores, abs=1e-6)
    assert second._model is None and second.cache.stats["embedding.hits"] == 3
    assert SemanticSimilarity().score(records) == pytest.approx(scores, abs=1e-5)  # same as without a cache
    assert Path(tmp_path / "embedding").is_dir()
