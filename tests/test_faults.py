"""The failure catalogue's cases not covered elsewhere (see tests/CATALOGUE.md for all of them)."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from champion.data import MAX_FIELD_CHARS, preprocess_data
from champion.errors import DataError, DeployError
from tests.conftest import REPO


def test_a_huge_value_is_refused_with_its_row_named(write_jsonl):
    path = write_jsonl(
        [{"question": "What is 2+2?", "reference": "4"}, {"question": "x" * (MAX_FIELD_CHARS + 1), "reference": "y"}]
    )
    with pytest.raises(DataError, match="row 2, column 'question'.*longer than") as info:
        preprocess_data(str(path))
    assert "shorten" in info.value.fix


def test_kubernetes_404_says_kserve_is_missing(tmp_path):
    """A real API server without KServe's CRDs (a second, bare one: the session's has them installed)."""
    from prompts import load_prompt
    from serving.manifests import render_inference_service
    from serving.rollout import KServeRollout, kube_api
    from serving.smoke import SmokeResult
    from tests.conftest import envtest_assets
    from tests.envtest.server import EnvTest
    from tests.test_deploy import make_bundle

    prompt = load_prompt("qa-concise")
    manifest = render_inference_service(
        make_bundle("a" * 64),
        prompt,
        name="champion-qa",
        namespace="team-a",
        storage_uri="s3://m/a",
        model_version="1",
        registered_model_name="qa",
        transformer_image="repo/champion@sha256:" + "0" * 64,
    )
    with EnvTest(envtest_assets(), crd_folders=()) as bare:
        bare.create_namespace("team-a")
        kubeconfig = bare.kubeconfig(tmp_path / "kubeconfig", bare.admin_token, "team-a")
        rollout = KServeRollout(kube_api(kubeconfig), "team-a", ready_timeout_s=1, poll_s=0.05)
        with pytest.raises(DeployError, match="not found \\(404\\)") as info:
            rollout.run(manifest, canary_traffic_percent=10, smoke=lambda url: SmokeResult(url, True, "unused"))
    assert "KServe is installed" in info.value.fix


@pytest.mark.parametrize(
    "code, message, fix",
    [
        (403, "forbids", "namespace"),
        (404, "not found", "--host"),
        (409, "already exists", "new name"),
        (503, "failed with HTTP 503", "retry"),
    ],
)
def test_kubeflow_api_errors_are_clear(monkeypatch, tmp_path, code, message, fix):
    from pipelines.compile import compile_all
    from pipelines.kubeflow import Connection, KubeflowError, connect, upload
    from tests.fake_kfp import FakeKFP

    monkeypatch.setenv("KFP_TOKEN", "kfp-token")
    compile_all(tmp_path)
    with FakeKFP() as fake:
        fake.fail_with[("POST", "/apis/v2beta1/pipelines/upload")] = code
        with pytest.raises(KubeflowError, match=message) as info:
            upload(connect(Connection(host=fake.url)), tmp_path / "pipelines" / "promotion.yaml", "v1")
    assert fix in info.value.fix


def test_a_run_that_never_finishes_is_a_timeout_not_a_pass(monkeypatch, tmp_path):
    from pipelines.compile import compile_all
    from pipelines.kubeflow import Connection, connect, submit_and_wait
    from tests.fake_kfp import FakeKFP

    monkeypatch.setenv("KFP_TOKEN", "kfp-token")
    compile_all(tmp_path)
    with FakeKFP() as fake:
        fake.run_polls = 10**6
        result = submit_and_wait(
            connect(Connection(host=fake.url)),
            tmp_path / "pipelines" / "promotion.yaml",
            run_name="slow",
            arguments={},
            experiment="ci",
            timeout_s=0.5,
            poll_s=0.05,
        )
    assert result.state == "TIMEOUT" and not result.succeeded


GENERATE = """
import sys
from champion.cache import ExampleCache
from champion.jsonl import read_jsonl, write_jsonl
from generation.batch import generate_answers
from prompts import load_prompt
from generation.cached import cached_generator
model, digest, cache_root, out = sys.argv[1:5]
rows = read_jsonl("pipelines/data/demo_eval.jsonl")[:12]
run = generate_answers(rows, load_prompt("qa-concise"), cached_generator("transformers", model, ExampleCache(cache_root), {"model_digest": digest}, batch_size=2))
write_jsonl(run.rows, out)
"""


def test_a_generation_killed_midway_leaves_no_partial_output_and_the_rerun_resumes(smollm2, tmp_path):
    from champion.cache import ExampleCache
    from champion.jsonl import read_jsonl
    from generation.batch import generate_answers
    from generation.cached import cached_generator
    from prompts import load_prompt

    cache_root, out = tmp_path / "cache", tmp_path / "generations.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-c", GENERATE, str(smollm2.path), smollm2.digest, str(cache_root), str(out)], cwd=REPO
    )
    deadline = time.monotonic() + 300
    while len(list(cache_root.rglob("*.json"))) < 2 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = len(list(cache_root.rglob("*.json")))
    assert 2 <= done < 12, done  # killed midway
    assert not out.exists()  # nothing that looks like a finished result
    cache = ExampleCache(cache_root)
    rerun = generate_answers(
        read_jsonl(REPO / "pipelines/data/demo_eval.jsonl")[:12],
        load_prompt("qa-concise"),
        cached_generator("transformers", str(smollm2.path), cache, {"model_digest": smollm2.digest}, batch_size=2),
    )
    assert len(rerun.rows) == 12 and cache.stats["generation.hits"] == done and cache.stats["generation.corrupt"] == 0


@pytest.mark.e2e
def test_a_planted_secret_appears_in_no_ir_log_or_report(tmp_path, weights_cache):
    """Every credential champion reads, set to one unique value; then every file a compile, a local run
    and an upload write is searched for it."""
    from tests.fake_kfp import FakeKFP

    secret = f"s3cr3t-{uuid.uuid4().hex}"
    env = {**os.environ, "CHAMPION_WEIGHTS_CACHE": str(weights_cache)}
    for name in (
        "KFP_TOKEN",
        "OPENAI_API_KEY",
        "HF_TOKEN",
        "CHAMPION_SERVING_TOKEN",
        "MLFLOW_TRACKING_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
    ):
        env[name] = secret
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "name: lenient\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, floor: 0.3, margin: 0.5}\n"
    )
    workspace, dist = tmp_path / "workspace", tmp_path / "dist"
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "--limit",
            "3",
            "--workspace",
            str(workspace),
            "--gate-config",
            str(policy),
            "--evaluator-config",
            str(REPO / "tests/configs/lean-evaluators.yaml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    compiled = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "compile", "--output", str(dist)],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
    )
    assert compiled.returncode == 0, compiled.stderr[-2000:]
    env["KFP_TOKEN"] = "kfp-token"
    with FakeKFP() as fake:
        uploaded = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "upload", "--host", fake.url, "--package-dir", str(dist)],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
        )
        assert uploaded.returncode == 0, uploaded.stderr[-2000:]
        assert all(
            secret not in json.dumps({k: v for k, v in r.items() if k != "authorization"}) for r in fake.requests
        )
    files = [p for p in [*workspace.rglob("*"), *dist.rglob("*")] if p.is_file()]
    assert len(files) > 50
    leaks = [str(p) for p in files if secret.encode() in p.read_bytes()]
    assert leaks == []
    assert secret not in run.stdout + run.stderr + compiled.stdout + compiled.stderr + uploaded.stdout + uploaded.stderr
