"""Semantic scoring through champion's evaluator vs raw sentence-transformers encode, same texts, same run.

    .venv/bin/python bench/scoring_overhead.py [--examples 72] [--repeats 3]

Both embed the outputs and references of the demo set with the packaged all-MiniLM-L6-v2; the raw
side encodes every text and takes the cosines itself. The evaluator adds de-duplication, the score
table and (with a cache) the cache lookups. Prints the ratio; target: at most 10% overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def best_of(repeats: int, function) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    from sentence_transformers import SentenceTransformer

    from champion.cache import ExampleCache
    from champion.jsonl import read_jsonl
    from evaluators.semantic import SemanticSimilarity, default_embedding_model

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=72)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    rows = read_jsonl("pipelines/data/demo_reference_outputs.jsonl")[: args.examples]
    records = [{"output": r["output"], "reference": r["reference"]} for r in rows]
    raw_model = SentenceTransformer(default_embedding_model(), device="cpu")

    def raw() -> list[float]:
        outputs = raw_model.encode(
            [r["output"] for r in records], batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
        references = raw_model.encode(
            [r["reference"] for r in records], batch_size=64, normalize_embeddings=True, convert_to_numpy=True
        )
        return [float(np.clip(a @ b, -1.0, 1.0)) for a, b in zip(outputs, references)]

    ours = SemanticSimilarity()
    ours.model  # load outside the timing, as raw_model is
    cached = SemanticSimilarity(cache=ExampleCache(tempfile.mkdtemp(prefix="bench-cache-")))
    cached.model
    raw(), ours.score(records), cached.score(records)  # warm up (and fill the cache)
    raw_s = best_of(args.repeats, raw)
    ours_s = best_of(args.repeats, lambda: ours.score(records))
    cold_cache = SemanticSimilarity(cache=ExampleCache(tempfile.mkdtemp(prefix="bench-cache-")))
    cold_cache.model
    cold_s = best_of(1, lambda: cold_cache.score(records))
    hit_s = best_of(args.repeats, lambda: cached.score(records))
    assert np.allclose(raw(), ours.score(records), atol=1e-5)
    print(
        f"{len(records)} examples ({2 * len(records)} texts, {len({r['output'] for r in records} | {r['reference'] for r in records})} distinct)"
    )
    print(f"raw sentence-transformers encode + cosine : {raw_s * 1000:8.1f} ms")
    print(
        f"champion SemanticSimilarity (no cache)    : {ours_s * 1000:8.1f} ms   ratio {ours_s / raw_s:.2f}  (target <= 1.10)"
    )
    print(f"champion SemanticSimilarity (cache cold)  : {cold_s * 1000:8.1f} ms   ratio {cold_s / raw_s:.2f}")
    print(f"champion SemanticSimilarity (cache warm)  : {hit_s * 1000:8.1f} ms   ratio {hit_s / raw_s:.2f}")
    print(f"reproduce: .venv/bin/python bench/scoring_overhead.py --examples {args.examples} --repeats {args.repeats}")


if __name__ == "__main__":
    main()
