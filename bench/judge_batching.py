"""The judge's grade on a CPU, by how many prompt tokens one forward pass may read; same answers, same run.

    .venv/bin/python bench/judge_batching.py [--prompt qa-evasive] [--limit 0] [--rounds 2] [--bounds 0,4096,2048,1024]

Generates the prompt's answers to the demo questions once, then grades them with the packaged judge (the default
evaluator config's pointwise rubric, nothing cached) with each bound on a forward pass's tokens (0: none, one
batch as large as memory allows), in interleaved rounds so that a noisy machine weighs on every bound alike.
Prints each bound's best time, its ratio to the unbounded pass and the largest change in any label's probability
against the unbounded pass (where batches differ, the padding and the matmul shapes differ, and so do the last
bits of fp32 sums).
"""

from __future__ import annotations

import argparse
import math
import os
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="qa-evasive")
    parser.add_argument("--limit", type=int, default=0, help="the demo set's first N questions (0: all 72)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--bounds", default="0,4096,2048,1024", help="tokens per forward pass; 0 for no bound")
    args = parser.parse_args()

    import torch

    from champion.data import preprocess_data
    from champion.weights import fetch_weights
    from evaluators.config import load_evaluator_config
    from evaluators.judge import Judge
    from generation.batch import generate_answers
    from generation.transformers_backend import CPU_READ_TOKENS, TransformersGenerator
    from prompts import load_prompt, load_rubric

    config = load_evaluator_config("default")
    assert config.judge is not None
    rows = preprocess_data("demo", limit=args.limit).eval_rows
    weights = fetch_weights(
        "smollm2", tempfile.mkdtemp(prefix="judge-bench-"), cache_dir=os.environ.get("CHAMPION_WEIGHTS_CACHE")
    )
    backend = TransformersGenerator(str(weights.path), device="cpu")
    answered = generate_answers(rows, load_prompt(args.prompt), backend, model_path=str(weights.path)).rows
    rubric = load_rubric(config.judge.pointwise_rubric)
    bounds = [int(b) or math.inf for b in args.bounds.split(",")]
    best: dict[float, float] = {}
    grades: dict[float, list] = {}
    for _ in range(args.rounds):
        for bound in bounds:
            backend.read_tokens = bound
            # The bare backend, no per-example cache: every verdict is computed.
            judge = Judge(backend, rubric, load_rubric(config.judge.pairwise_rubric))
            started = time.perf_counter()
            grades[bound] = judge.grade(answered)
            best[bound] = min(best.get(bound, math.inf), time.perf_counter() - started)

    reference = grades[bounds[0]]
    print(
        f"{len(answered)} answers to {args.prompt} graded, torch threads {torch.get_num_threads()}, best of {args.rounds}"
    )
    print(f"{'tokens per pass':>16} {'seconds':>8} {'ratio':>6} {'max |dp|':>10}")
    for bound in bounds:
        moved = max(
            (
                abs(mine.distribution[label] - theirs.distribution[label])
                for mine, theirs in zip(grades[bound], reference)
                for label in theirs.distribution
            ),
            default=0.0,
        )
        label = "none" if bound == math.inf else str(bound)
        mark = "  (the CPU default)" if bound == CPU_READ_TOKENS else ""
        print(f"{label:>16} {best[bound]:8.2f} {best[bound] / best[bounds[0]]:6.2f} {moved:10.1e}{mark}")


if __name__ == "__main__":
    main()
