"""How cost grows with the number of examples: each step's library code at 100, 1,000 and 5,000 examples.

    .venv/bin/python bench/scaling.py [--sizes 100 1000 5000] [--generate-up-to 100]

The evaluation set is generated (the demo set's questions and answers, varied per row, so embeddings and
de-duplication see distinct texts). Every step runs in a fresh child process, so its peak memory (max RSS) is
its own: preprocess_data, batch_generate (the real SmolLM2 on CPU, only up to ``--generate-up-to`` examples:
it is per-example and model-bound, ~0.1 s each here; bench/generation_batching.py measures it), evaluate
(token F1, exact match, semantic similarity with the packaged MiniLM, ragas string metrics), the gate (a
paired bootstrap with the default policy's 5,000 resamples against a champion table of the same size),
drift (Evidently) and the per-example cache. For sizes above ``--generate-up-to`` the outputs are the
references, lightly edited, so scoring has realistic texts.

Printed: examples/s per step and size, peak RSS, and per step the ratio of its time per example at the
largest size to that at the smallest (about 1 is linear; a step quadratic in the number of examples would
show ~the size ratio, 50 here).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

STEPS = ("preprocess_data", "batch_generate", "evaluate", "gate", "drift", "cache")


def make_set(n: int, folder: Path) -> Path:
    from champion.jsonl import read_jsonl, write_jsonl

    demo = read_jsonl("pipelines/data/demo_eval.jsonl")
    rows = []
    for i in range(n):
        base = demo[i % len(demo)]
        rows.append(
            {"id": f"s{i:06d}", "question": f"{base['question']} (case {i})", "reference": f"{base['reference']} {i}"}
        )
    path = folder / f"set-{n}.jsonl"
    write_jsonl(rows, path)
    return path


def outputs_for(rows: list[dict], seed: int) -> list[dict]:
    rng = random.Random(seed)
    words = ["indeed", "perhaps", "so", "the answer is", "I think"]
    return [r | {"output": f"{rng.choice(words)} {r['reference']}", "completion_tokens": 8} for r in rows]


def run_step(step: str, n: int, folder: str, generate_up_to: int, queue) -> None:
    """One step at one size in this (child) process; puts (seconds, examples, peak RSS in MiB)."""
    from champion.data import preprocess_data
    from champion.jsonl import read_jsonl

    folder_path = Path(folder)
    data = str(folder_path / f"set-{n}.jsonl")
    rows = preprocess_data(data).eval_rows
    started = time.perf_counter()
    examples = n
    if step == "preprocess_data":
        started = time.perf_counter()
        preprocess_data(data)
    elif step == "batch_generate":
        if n > generate_up_to:
            queue.put(None)
            return
        from champion.weights import fetch_weights
        from generation import get_generator
        from generation.batch import generate_answers
        from prompts import load_prompt

        weights = fetch_weights("smollm2", tempfile.mkdtemp(), cache_dir=os.environ.get("CHAMPION_WEIGHTS_CACHE"))
        generator = get_generator("transformers", weights.path, batch_size=0)
        started = time.perf_counter()
        generate_answers(rows, load_prompt("qa-concise"), generator)
    elif step == "evaluate":
        from evaluators.config import EvaluatorConfig
        from evaluators.evaluate import evaluate_generations

        config = EvaluatorConfig(
            name="bench",
            version=1,
            metrics=("token_f1", "exact_match", "semantic_similarity", "ragas_string_similarity"),
        )
        generated = outputs_for(rows, 0)
        from evaluators.semantic import SemanticSimilarity

        SemanticSimilarity().model  # the model load is not per example
        started = time.perf_counter()
        evaluate_generations(generated, config)
    elif step == "gate":
        from evaluators.gate import decide
        from evaluators.policy import load_policy

        rng = random.Random(1)
        challenger = [{"id": r["id"], "token_f1": rng.random(), "semantic_similarity": rng.random()} for r in rows]
        champion = [{"id": r["id"], "token_f1": rng.random(), "semantic_similarity": rng.random()} for r in rows]
        policy = load_policy("default").model_copy(
            update={
                "metrics": {
                    k: v for k, v in load_policy("default").metrics.items() if k in ("token_f1", "semantic_similarity")
                }
            }
        )
        started = time.perf_counter()
        decide(challenger, policy, champion_table=champion)
    elif step == "drift":
        from evaluators.drift import drift_report
        from evaluators.semantic import SemanticSimilarity

        semantic = SemanticSimilarity()
        semantic.model
        current, reference = outputs_for(rows, 0), outputs_for(rows, 1)
        started = time.perf_counter()
        drift_report(current, reference, semantic=semantic)
    elif step == "cache":
        from champion.cache import ExampleCache

        cache = ExampleCache(tempfile.mkdtemp(prefix="bench-cache-"))
        keys = [cache.key("generation", "bench", r["id"]) for r in rows]
        started = time.perf_counter()
        cache.put_many("generation", {k: {"text": r["question"]} for k, r in zip(keys, rows)})
        found = cache.get_many("generation", keys)
        assert len(found) == len(keys)
    seconds = time.perf_counter() - started
    del read_jsonl
    queue.put((seconds, examples, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))


def measure(step: str, n: int, folder: Path, generate_up_to: int):
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=run_step, args=(step, n, str(folder), generate_up_to, queue))
    process.start()
    result = queue.get(timeout=3600)
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--generate-up-to", type=int, default=100)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    for n in args.sizes:
        make_set(n, folder)
    figures: dict[str, dict[int, tuple[float, float]]] = {}
    print(f"{'step':<16}" + "".join(f"{n:>22,}" for n in args.sizes) + "   per-example time, largest/smallest")
    for step in STEPS:
        row = {}
        for n in args.sizes:
            result = measure(step, n, folder, args.generate_up_to)
            if result is not None:
                seconds, examples, peak = result
                row[n] = (examples / seconds if seconds > 0 else float("inf"), peak)
        figures[step] = row
        cells = "".join(
            f"{f'{row[n][0]:,.0f}/s {row[n][1]:,.0f} MiB':>22}" if n in row else f"{'(not run)':>22}"
            for n in args.sizes
        )
        measured = sorted(row)
        ratio = f"{(row[measured[0]][0] / row[measured[-1]][0]):.2f}x" if len(measured) > 1 else "n/a (one size)"
        print(f"{step:<16}{cells}   {ratio}")
    if args.json:
        args.json.write_text(json.dumps({s: {str(n): v for n, v in r.items()} for s, r in figures.items()}, indent=2))


if __name__ == "__main__":
    main()
