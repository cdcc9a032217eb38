"""Cold run vs prompt-only re-run vs unchanged re-run of `champion run`, side by side in one workspace,
with each run's peak memory and a per-step profile of the unchanged re-run.

    .venv/bin/python bench/incremental_runs.py [--limit 24]

Setup (not timed): promote the baseline prompt qa-concise with the cache on, as the run that made it
the champion would have, so every timed run is a paired run (challenger and champion both evaluated).
Then, timed:
  cold       challenger qa-oneline with the per-example cache off: everything computed
  prompt     challenger qa-evasive (only the prompt differs), cache on: the champion's generations,
             embeddings and judge verdicts come from the cache
  unchanged  the same command again: everything comes from the cache
Converted weights are cached for all runs (the one-time GGUF conversion is an install cost).
"""

from __future__ import annotations

import argparse
import json
import os
import re
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
    process = subprocess.Popen([*CHAMPION, *arguments, "--json"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=REPO, env=env)
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if status != 0:
        sys.exit(f"champion run {' '.join(arguments)} failed with status {status}")
    return seconds, usage.ru_maxrss, json.loads(output)


def step_profile(log_path: str) -> list[tuple[str, float]]:
    started, steps = {}, []
    stamp = re.compile(r"^(\d\d):(\d\d):(\d\d\.\d+) .*?(Executing task|Task) '?([\w-]+)'?")
    for line in Path(log_path).read_text().splitlines():
        line = re.sub(r"\x1b\[[0-9;]*m", "", line)
        match = stamp.match(line)
        if not match:
            continue
        seconds = int(match[1]) * 3600 + int(match[2]) * 60 + float(match[3])
        if match[4] == "Executing task":
            started[match[5]] = seconds
        elif match[5] in started:
            steps.append((match[5], seconds - started.pop(match[5])))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=24)
    args = parser.parse_args()
    workspace = Path(tempfile.mkdtemp(prefix="champion-bench-"))
    env = {**os.environ, "CHAMPION_WEIGHTS_CACHE": os.environ.get("CHAMPION_WEIGHTS_CACHE", str(workspace / "weights"))}
    policy = workspace / "policy.yaml"
    policy.write_text("name: bench\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.0, margin: 1.0}\n")
    common = ["--workspace", str(workspace), "--limit", str(args.limit), "--gate-config", str(policy)]
    print(f"setup: promoting qa-concise in {workspace} (not timed)…", flush=True)
    timed_run(["--prompt", "qa-concise", *common], env)
    rows = []
    for label, extra in (("cold", ["--prompt", "qa-oneline", "--no-cache"]), ("prompt", ["--prompt", "qa-evasive"]), ("unchanged", ["--prompt", "qa-evasive"])):
        seconds, peak_kb, summary = timed_run([*extra, "--no-promote", *common], env)  # the champion stays qa-concise
        rows.append((label, seconds, peak_kb, summary))
        print(f"{label:<10} {seconds:7.1f} s  peak {peak_kb / 1024 / 1024:.2f} GB  cache {summary.get('cache', {})}", flush=True)
    cold = rows[0][1]
    print()
    print(f"prompt-only re-run / cold = {rows[1][1] / cold:.2f}  (target <= 0.25)")
    print(f"unchanged re-run / cold   = {rows[2][1] / cold:.2f}  (target <= 0.10)")
    print(f"peak memory of a full run = {max(r[2] for r in rows) / 1024 / 1024:.2f} GB  (target < 4 GB)")
    print("\nwhere the unchanged re-run's time goes (kfp.local steps, seconds):")
    for step, seconds in sorted(step_profile(rows[2][3]["reports"]["log"]), key=lambda s: -s[1]):
        print(f"  {step:<24} {seconds:6.1f}")
    print(f"\nreproduce: .venv/bin/python bench/incremental_runs.py --limit {args.limit}")


if __name__ == "__main__":
    main()
