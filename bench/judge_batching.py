"""The judge's grade on a CPU, by how many prompt tokens one forward pass may hold; same answers, same run.

    .venv/bin/python bench/judge_batching.py [--prompt qa-evasive] [--limit 0] [--rounds 3] [--bounds 0,4096,3072,2048,1536]

Generates the prompt's answers to the demo questions once, then grades them with the packaged judge (the default
evaluator config's pointwise rubric, nothing cached) under each bound on a pass's tokens (0: none, a batch as large
as memory allows), in interleaved rounds so that a noisy machine weighs on every bound alike. Prints, per bound,
the passes it made and the widest (prompts counted in full, padding included, as the backend counts them), the
best time, its ratio to the unbounded grade (to the first bound when 0 is not among them) and the largest change
in any label's probability against it (where batches differ, the padding and the matmul shapes differ, and so do
the last bits of fp32 sums).
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
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--bounds", default="0,4096,3072,2048,1536", help="tokens per forward pass; 0 for no bound")
    args = parser.parse_args()

    import torch

    from champion.data import preprocess_data
    from champion.weights import fetch_weights
    from evaluators.config import load_evaluator_config
    from evaluators.judge import Judge
    from generation.batch import generate_answers
    from generation.transformers_backend import CPU_READ_TOKENS, TransformersGenerator, _packed
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
    judge = Judge(backend, rubric, load_rubric(config.judge.pairwise_rubric))  # the bare backend: nothing cached
    bounds = [int(b) or math.inf for b in args.bounds.split(",")]
    baseline = math.inf if math.inf in bounds else bounds[0]

    # The passes each bound makes, as choice_logprobs packs the prompts Judge.grade renders.
    fields = [
        {
            "question": r["question"],
            "reference": r.get("reference", ""),
            "answer": r["output"],
            "context": r.get("context", ""),
        }
        for r in answered
    ]
    conversations = [rubric.render(**{k: v for k, v in f.items() if k in rubric.variables}) for f in fields]
    prompts = backend._tokenize(conversations, suffix=rubric.verdict_prefix.rstrip() + " ")
    passes = {}
    for bound in bounds:
        batches = _packed(prompts, backend._batch_for(prompts, 1), read_tokens=bound)
        passes[bound] = (len(batches), max(len(b) * max(len(prompts[i]) for i in b) for b in batches))

    best: dict[float, float] = {}
    grades: dict[float, list] = {}
    for _ in range(args.rounds):
        for bound in bounds:
            backend.read_tokens = bound
            started = time.perf_counter()
            grades[bound] = judge.grade(answered)
            best[bound] = min(best.get(bound, math.inf), time.perf_counter() - started)

    threads = torch.get_num_threads()
    print(f"{len(answered)} answers to {args.prompt} graded, torch threads {threads}, best of {args.rounds}")
    print(f"{'tokens per pass':>16} {'passes':>7} {'widest':>7} {'seconds':>8} {'ratio':>6} {'max |dp|':>10}")
    for bound in bounds:
        moved = max(
            (
                abs(mine.distribution[label] - theirs.distribution[label])
                for mine, theirs in zip(grades[bound], grades[baseline])
                for label in theirs.distribution
            ),
            default=0.0,
        )
        label = "none" if bound == math.inf else str(bound)
        mark = "  (the CPU default)" if bound == CPU_READ_TOKENS else ""
        count, widest = passes[bound]
        ratio = best[bound] / best[baseline]
        print(f"{label:>16} {count:7d} {widest:7d} {best[bound]:8.2f} {ratio:6.2f} {moved:10.1e}{mark}")


if __name__ == "__main__":
    main()
