"""A prompt engineer's loop: `champion run` for a prompt-only change against the bare work it has to do.

    .venv/bin/python bench/prompt_loop.py [--prompt qa-evasive] [--limit 0]

Setup (not timed): a workspace whose champion is qa-concise (promoted by `champion run`, caches on), and the
converted weights in a weights cache every timed part shares.
Then, side by side on the same machine state:
  floor   ONE warm Python process through champion's own library functions, caches off: load the demo model,
          the judge and the embedder, generate the challenger's answers, score them with the default
          evaluator config (the judge's grade included). Split: load, generate, embed, lexical+ragas+guards,
          judge.
  run     `champion run --prompt <challenger> --no-promote` in that workspace: what the user waits for. The
          champion's side comes from KFP's step cache, the challenger is generated and scored in its steps.
Prints both, their ratio (goal <= 1.2) and the run's per-step split from its own task records.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
CHAMPION = [sys.executable, "-m", "pipelines.cli", "run"]


def champion_run(arguments: list[str], env: dict) -> tuple[float, dict]:
    started = time.perf_counter()
    done = subprocess.run(
        [*CHAMPION, *arguments, "--json"], capture_output=True, text=True, cwd=REPO, env=env, check=False
    )
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):  # 1: a rejection, which is a result
        sys.exit(f"champion run {' '.join(arguments)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return seconds, json.loads(done.stdout)


def floor(prompt_name: str, limit: int, weights_cache: Path) -> dict[str, float]:
    """The bare work in this process; each stage timed on its own, nothing cached between runs."""
    import torch

    from champion.cache import ExampleCache
    from champion.data import preprocess_data
    from champion.weights import fetch_weights
    from evaluators import score_examples
    from evaluators.config import build_metrics, load_evaluator_config
    from evaluators.evaluate import build_judge
    from generation.batch import generate_answers
    from generation.cached import cached_generator
    from prompts import load_prompt

    config = load_evaluator_config("default")
    assert config.judge is not None
    rows = preprocess_data("demo", limit=limit).eval_rows
    cache = ExampleCache()  # disabled: the floor computes everything
    split: dict[str, float] = {}

    started = time.perf_counter()
    weights = fetch_weights("smollm2", tempfile.mkdtemp(prefix="floor-weights-"), cache_dir=weights_cache)
    generator = cached_generator("transformers", str(weights.path), cache, {"model_digest": weights.digest})
    judge = build_judge(config.judge, str(weights_cache), cache)
    metrics = build_metrics(config, judge.generator, cache)
    embedder = next(m for m in metrics if m.spec.name == "semantic_similarity")
    embedder.model  # noqa: B018 - loaded here so its load counts as loading, not scoring
    split["load"] = time.perf_counter() - started

    started = time.perf_counter()
    run = generate_answers(rows, load_prompt(prompt_name), generator, model_path=str(weights.path))
    split["generate"] = time.perf_counter() - started
    split["tokens"] = run.generated_tokens

    scored = run.rows
    for label, chosen in (("embed", [embedder]), ("lexical", [m for m in metrics if m is not embedder])):
        started = time.perf_counter()
        score_examples(scored, chosen)
        split[label] = time.perf_counter() - started
    started = time.perf_counter()
    judge.grade(scored)
    split["judge"] = time.perf_counter() - started
    split["threads"] = torch.get_num_threads()
    return split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompt", default="qa-evasive", help="the challenger's prompt (the champion: qa-concise)")
    parser.add_argument("--limit", type=int, default=0, help="the demo set's first N questions (0: all 72)")
    args = parser.parse_args()
    workspace = Path(tempfile.mkdtemp(prefix="champion-loop-"))
    weights_cache = Path(os.environ.get("CHAMPION_WEIGHTS_CACHE", workspace / "weights"))
    env = {**os.environ, "CHAMPION_WEIGHTS_CACHE": str(weights_cache)}
    common = ["--workspace", str(workspace)] + (["--limit", str(args.limit)] if args.limit else [])
    print(f"setup: promoting qa-concise in {workspace} (not timed)…", flush=True)
    champion_run(["--prompt", "qa-concise", *common], env)

    split = floor(args.prompt, args.limit, weights_cache)
    floor_s = sum(v for k, v in split.items() if k not in ("tokens", "threads"))
    run_s, summary = champion_run(["--prompt", args.prompt, "--no-promote", *common], env)

    print(f"\nchallenger {args.prompt}, {args.limit or 72} demo questions, torch threads {split['threads']:.0f}")
    print(f"floor (one warm process)  {floor_s:6.1f} s")
    for stage in ("load", "generate", "embed", "lexical", "judge"):
        print(f"  {stage:<24}{split[stage]:6.1f} s")
    print(f"  generated {split['tokens']:.0f} tokens = {split['tokens'] / split['generate']:.1f} tokens/s")
    print(f"champion run              {run_s:6.1f} s  ({summary.get('decision')})")
    for step, entry in sorted(summary["steps"].items(), key=lambda item: -(item[1]["seconds"] or 0)):
        if (entry["seconds"] or 0) >= 0.5:
            print(f"  {step:<24}{entry['seconds']:6.1f} s  {entry['state']}")
    print(f"\nrun / floor = {run_s / floor_s:.2f}  (goal <= 1.2)")


if __name__ == "__main__":
    main()
