"""Cold run vs prompt-only re-run vs unchanged re-run of `champion run`, side by side in one workspace,
with each run's peak memory and a per-step profile of the unchanged re-run.

    .venv/bin/python bench/incremental_runs.py [--limit 24]

Setup (not timed): promote the baseline prompt qa-concise with the caches on, as the run that made it
the champion would have, so every timed run is a paired run (challenger and champion both evaluated).
Then, timed:
  cold       challenger qa-oneline with --no-cache (KFP's step cache and the per-example cache off):
             everything computed
  prompt     challenger qa-evasive (only the prompt differs), caches on: the champion's steps come from
             KFP's step cache, the challenger is generated and scored
  unchanged  the same command again: every pure step comes from KFP's step cache
  one row    one row of the evaluation set edited: the steps that read the data run again, the others
             (pinning, the weights) are reused
Converted weights are cached for all runs (the one-time GGUF conversion is an install cost).
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

REPO = Path(__file__).resolve().parent.parent
CHAMPION = [sys.executable, "-m", "pipelines.cli", "run"]


def timed_run(arguments: list[str], env: dict) -> tuple[float, int, dict]:
    """Wall seconds, peak RSS (KB) of the run and its descendants, and the --json summary."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [*CHAMPION, *arguments, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, env=env
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"champion run {' '.join(arguments)} failed with status {status}")
    return seconds, usage.ru_maxrss, json.loads(output)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args()
    workspace = Path(tempfile.mkdtemp(prefix="champion-bench-"))
    env = {**os.environ, "CHAMPION_WEIGHTS_CACHE": os.environ.get("CHAMPION_WEIGHTS_CACHE", str(workspace / "weights"))}
    policy = workspace / "policy.yaml"
    policy.write_text(
        "name: bench\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.0, margin: 1.0}\n"
    )
    data = workspace / "eval.jsonl"  # a copy of the demo set's first rows: the last run edits one of them
    rows_in = (REPO / "pipelines" / "data" / "demo_eval.jsonl").read_text(encoding="utf-8").splitlines()[: args.limit]
    data.write_text("\n".join(rows_in) + "\n", encoding="utf-8")
    common = ["--workspace", str(workspace), "--data", str(data), "--gate-config", str(policy)]
    print(f"setup: promoting qa-concise in {workspace} (not timed)…", flush=True)
    timed_run(["--prompt", "qa-concise", *common], env)
    rows = []
    runs = (
        ("cold", ["--prompt", "qa-oneline", "--no-cache"]),
        ("prompt", ["--prompt", "qa-evasive"]),
        ("unchanged", ["--prompt", "qa-evasive"]),
        ("one row", ["--prompt", "qa-evasive"]),
    )
    for label, extra in runs:
        if label == "one row":
            first = json.loads(rows_in[0])
            first["question"] = first["question"].rstrip("?") + " (edited)?"
            data.write_text("\n".join([json.dumps(first), *rows_in[1:]]) + "\n", encoding="utf-8")
        seconds, peak_kb, summary = timed_run([*extra, "--no-promote", *common], env)  # the champion stays qa-concise
        rows.append((label, seconds, peak_kb, summary))
        reused = summary["cache"]["steps"]
        print(
            f"{label:<10} {seconds:7.1f} s  peak {peak_kb / 1024 / 1024:.2f} GB  steps reused {len(reused)}: {', '.join(reused) or '-'}",
            flush=True,
        )
    cold = rows[0][1]
    print()
    print(f"prompt-only re-run / cold = {rows[1][1] / cold:.2f}  (target <= 0.35)")
    print(f"unchanged re-run / cold   = {rows[2][1] / cold:.2f}  (target <= 0.10)")
    print(f"one edited row / cold     = {rows[3][1] / cold:.2f}  (re-runs only the steps that read the data)")
    print(f"peak memory of a full run = {max(r[2] for r in rows) / 1024 / 1024:.2f} GB  (target < 4 GB)")
    for label, _, _, summary in rows[1:]:
        print(f"\nwhere the {label} run's time goes (seconds per step, from the run's own task records):")
        for step, entry in sorted(summary["steps"].items(), key=lambda item: -(item[1]["seconds"] or 0)):
            print(f"  {step:<24} {entry['seconds'] or 0:6.1f}  {entry['state']}")
    print(f"\nreproduce: .venv/bin/python bench/incremental_runs.py --limit {args.limit}")


if __name__ == "__main__":
    main()
