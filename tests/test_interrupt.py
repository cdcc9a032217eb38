"""Stopping a run stops it: SIGTERM to `champion run` during each step in turn, and to `champion serve`.

Each case runs the real CLI as a child process, waits until the step under test has started (the
run's own log names the task kfp.local is executing; reading it here only times the signal), records
every process the command has started, sends SIGTERM and checks that no process survives, the
champion alias never moves, the run is recorded as cancelled, and the next run succeeds from the cache.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from champion.interrupt import descendants
from tests.conftest import REPO

pytestmark = pytest.mark.e2e

POLICY = "name: lenient\nversion: 1\nmin_examples: 2\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.2, margin: 0.5}\n"


def champion_version(workspace: Path):
    from mlflow import MlflowClient

    from registry.registry import current_champion

    if not (workspace / "mlflow.db").exists():
        return None
    uri = f"sqlite:///{workspace / 'mlflow.db'}"
    return current_champion(MlflowClient(tracking_uri=uri, registry_uri=uri), "champion-qa")


def start_run(workspace: Path, policy: Path, weights_cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--limit",
            "2",
            "--batch-size",
            "2",
            "--workspace",
            str(workspace),
            "--gate-config",
            str(policy),
            "--evaluator-config",
            str(REPO / "tests/configs/lean-evaluators.yaml"),
            "--json",
        ],
        cwd=REPO,
        env={**os.environ, "CHAMPION_WEIGHTS_CACHE": str(weights_cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_task(workspace: Path, task: str, process: subprocess.Popen, timeout_s: float = 300.0) -> None:
    deadline = time.monotonic() + timeout_s
    pattern = re.compile(rf"Executing task '?{re.escape(task)}'?")
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the run ended before {task} started: {process.stderr.read()[-2000:]}"
        for log in (workspace / "logs").glob("champion-promotion-*.log") if (workspace / "logs").is_dir() else []:
            if pattern.search(re.sub(r"\x1b\[[0-9;]*m", "", log.read_text(errors="replace"))):
                return
        time.sleep(0.1)
    raise AssertionError(f"{task} did not start within {timeout_s} s")


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("interrupt")
    policy = root / "policy.yaml"
    policy.write_text(POLICY)
    return root / "workspace", policy


@pytest.mark.parametrize("task", ["batch-generate-op", "evaluate-op", "register-op", "deploy-op"])
def test_sigterm_during_a_step_stops_everything_and_moves_nothing(setup, weights_cache, task):
    workspace, policy = setup
    before = champion_version(workspace)
    process = start_run(workspace, policy, weights_cache)
    lock = None
    try:
        if task == "deploy-op":
            # Hold the alias lock so the deploy step cannot finish its move before the signal lands:
            # the test then proves that the move, once the lock is free, is refused.
            (workspace).mkdir(parents=True, exist_ok=True)
            lock = open(workspace / "mlflow.alias.lock", "a")
            fcntl.flock(lock, fcntl.LOCK_EX)
        wait_for_task(workspace, task, process)
        started = descendants(process.pid)
        assert started, "the command has started step processes"
        signalled = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        process.send_signal(signal.SIGTERM)
        if lock is not None:
            time.sleep(1.0)
            fcntl.flock(lock, fcntl.LOCK_UN)
        _, stderr = process.communicate(timeout=120)
    finally:
        if lock is not None:
            lock.close()
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, stderr[-2000:]
    assert "stopped by SIGTERM" in stderr and "Traceback" not in stderr
    survivors = [pid for pid in started if alive(pid)]
    assert survivors == [], f"processes still running after the command exited: {survivors}"
    assert champion_version(workspace) == before
    events = [json.loads(line) for line in open(workspace / "audit.jsonl")]
    assert events[-1]["event"] == "run_cancelled" and "SIGTERM" in events[-1]["reason"]
    assert not [e for e in events if e["event"] == "alias_moved" and e["time"] >= signalled]


def test_after_the_interruptions_the_next_run_succeeds_from_the_cache_and_serve_stops_cleanly(setup, weights_cache):
    workspace, policy = setup
    process = start_run(workspace, policy, weights_cache)
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-2000:]
    summary = json.loads(stdout)
    cache = summary["cache"]
    # Generated before the interruptions: nothing is generated again, whichever cache answers (the whole
    # step from KFP's step cache, or each example from the per-example cache).
    assert summary["decision"] == "promoted" and cache["examples"].get("generation", {}).get("misses", 0) == 0
    assert "batch-generate-op[0]" in cache["steps"] or cache["examples"]["generation"]["hits"] == 2
    assert champion_version(workspace) == summary["model_version"]

    port = 18000 + os.getpid() % 1000
    serve = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "serve", "--workspace", str(workspace), "--port", str(port)],
        cwd=REPO,
        env={**os.environ, "CHAMPION_WEIGHTS_CACHE": str(weights_cache)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            assert serve.poll() is None, serve.stderr.read()[-2000:]
            try:
                if requests.get(f"http://127.0.0.1:{port}/openai/v1/models", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.5)
        started = descendants(serve.pid)
        assert started, "the predictor runs as a child process"
        serve.send_signal(signal.SIGTERM)
        _, stderr = serve.communicate(timeout=60)
    finally:
        if serve.poll() is None:
            serve.kill()
    assert [pid for pid in started if alive(pid)] == []
    assert serve.returncode in (0, 143), stderr[-2000:]
    assert "Traceback" not in stderr
    with pytest.raises(requests.RequestException):
        requests.get(f"http://127.0.0.1:{port + 1}/v1/models", timeout=2)


def test_moving_the_alias_is_the_runs_last_act(tmp_path):
    """Ctrl-C while drift still ran after deploy used to leave a moved alias under a "cancelled" run: now deploy
    (and skip_deploy) wait for every other step, drift included, so nothing runs after the alias moves."""
    import yaml
    from kfp import compiler

    from pipelines.promotion import promotion_pipeline

    compiler.Compiler().compile(promotion_pipeline, str(tmp_path / "promotion.yaml"))
    spec = next(yaml.safe_load_all((tmp_path / "promotion.yaml").read_text()))  # the pipeline spec, then the platform's
    # deploy and skip_deploy sit in the If/Else branches; the branches' task in the root DAG carries their dependencies.
    branches = [task for name, task in spec["root"]["dag"]["tasks"].items() if name.startswith("condition-branches")]
    assert branches and all("drift-op" in task["dependentTasks"] for task in branches)


def test_a_stop_after_the_alias_moved_says_the_promotion_stands(tmp_path):
    from champion.interrupt import Interrupted
    from pipelines.local import _alias_moved_since

    audit = tmp_path / "audit.jsonl"
    audit.write_text(json.dumps({"event": "alias_moved", "model": "champion-qa", "to_version": "1"}) + "\n")
    start = audit.stat().st_size  # an earlier run's move is not this run's
    assert _alias_moved_since(audit, start) == ""
    with audit.open("a") as handle:
        handle.write(
            json.dumps({"event": "alias_moved", "model": "champion-qa", "to_version": "2", "bundle_id": "ab" * 32})
            + "\n"
        )
    promoted = _alias_moved_since(audit, start)
    assert promoted == "champion-qa v2, bundle abababababab"
    message = str(Interrupted(signal.SIGINT, promoted))
    assert "already moved the champion alias" in message and "that promotion stands" in message
    assert Interrupted(signal.SIGINT, promoted).exit_code == 130
