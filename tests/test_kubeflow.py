"""Operating champion on Kubeflow: upload, schedule, CI trigger, with the real ``kfp.Client`` against
tests/fake_kfp.py (held to the KFP API description vendored in tests/contracts/), and change detection on
real git repositories. Not proven here: what a real Kubeflow does with the runs (Argo, pods, the UI).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import requests
import yaml

from pipelines.compile import compile_all
from pipelines.kubeflow import (
    Connection,
    KubeflowError,
    RunResult,
    check_cron,
    connect,
    name_commit,
    prompts_hash,
    record_watched_run,
    schedule,
    submit_and_wait,
    upload,
    version_name,
)
from pipelines.trigger import TriggerError, changed_bundles
from prompts.loader import PROMPTS_DIR
from tests.conftest import REPO, publish_version_two
from tests.fake_kfp import FakeKFP


@pytest.fixture(scope="module")
def packages(tmp_path_factory):
    target = tmp_path_factory.mktemp("compiled")
    compile_all(target)
    return target / "pipelines"


@pytest.fixture
def kfp(monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "kfp-token")
    monkeypatch.setenv("HOME", os.environ.get("HOME", "/tmp"))
    with FakeKFP() as fake:
        yield fake
    assert not fake.violations, fake.violations  # every request followed the API description


def client_for(fake, namespace=""):
    return connect(Connection(host=fake.url, namespace=namespace))


def test_first_upload_creates_the_pipeline_then_versions(kfp, packages):
    client = client_for(kfp)
    first = upload(client, packages / "promotion.yaml", "v0.1.0-aaaa1111-p12345678")
    assert first.created_pipeline and first.created_version
    again = upload(client, packages / "promotion.yaml", "v0.1.0-aaaa1111-p12345678")
    assert (
        not again.created_pipeline and not again.created_version and again.version_id == first.version_id
    )  # same commit: a no-op
    second = upload(client, packages / "promotion.yaml", "v0.1.0-bbbb2222-p12345678")
    assert second.created_version and second.pipeline_id == first.pipeline_id and second.version_id != first.version_id
    assert second.link == f"{kfp.url}/#/pipelines/details/{first.pipeline_id}/version/{second.version_id}"
    assert kfp.uploads[second.version_id] == (packages / "promotion.yaml").read_bytes()
    assert all(r["authorization"] == "Bearer kfp-token" for r in kfp.requests)
    uploads = [r for r in kfp.requests if r["path"].endswith(("/upload", "/upload_version"))]
    assert [r["path"].rsplit("/", 1)[1] for r in uploads] == ["upload", "upload_version", "upload_version"] and all(
        r["form"] == ["uploadfile"] for r in uploads
    )


def test_version_names_carry_project_commit_and_prompts(tmp_path):
    assert version_name("0.1.0", "abcd1234", "9f8e7d6c") == "v0.1.0-abcd1234-p9f8e7d6c"
    assert re.fullmatch(r"[0-9a-f]{8}", prompts_hash())
    changed = tmp_path / "prompts"
    shutil.copytree(PROMPTS_DIR, changed, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    text = (changed / "qa-concise" / "v1.yaml").read_text().replace("max_tokens: 32", "max_tokens: 33")
    (changed / "qa-concise" / "v1.yaml").write_text(text)
    assert prompts_hash(changed) != prompts_hash()


def test_champion_upload_cli_prints_links_and_is_idempotent(kfp, packages):
    env = {**os.environ, "KFP_TOKEN": "kfp-token"}
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "upload",
        "--host",
        kfp.url,
        "--package-dir",
        str(packages.parent),
    ]
    first = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert first.returncode == 0, first.stderr
    lines = first.stdout.strip().splitlines()
    assert len(lines) == 2 and all(
        "new pipeline, new version" in line and "/#/pipelines/details/" in line for line in lines
    )
    assert f"-{name_commit(REPO)}-p{prompts_hash()}" in lines[0]
    second = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert second.returncode == 0 and second.stdout.count("version already uploaded") == 2
    assert len(kfp.pipelines) == 2


def test_bad_token_and_unreachable_server_are_clear_errors(kfp, packages, monkeypatch):
    monkeypatch.setenv("KFP_TOKEN", "stale")
    with pytest.raises(KubeflowError, match="refused the credentials") as info:
        upload(client_for(kfp), packages / "promotion.yaml", "v1")
    assert "KFP_TOKEN" in info.value.fix
    monkeypatch.setenv("KFP_TOKEN", "kfp-token")
    with pytest.raises(KubeflowError, match="unreachable"):
        upload(connect(Connection(host="http://127.0.0.1:9")), packages / "promotion.yaml", "v1")


def test_schedule_creates_then_updates_never_duplicates(kfp, packages):
    client = client_for(kfp, namespace="team-a")
    upload(client, packages / "scheduled_eval.yaml", "v0.1.0-aaaa1111-p1", namespace="team-a")
    first = schedule(
        client,
        name="nightly",
        pipeline_name="champion-scheduled-eval",
        cron="0 0 6 * * *",
        params={"data_source": "s3://eval/latest.jsonl"},
        experiment="champion-monitoring",
        namespace="team-a",
    )
    assert not first.replaced and first.pipeline_version == "v0.1.0-aaaa1111-p1"
    second = schedule(
        client,
        name="nightly",
        pipeline_name="champion-scheduled-eval",
        cron="0 30 5 * * *",
        params={"data_source": "s3://eval/latest.jsonl", "webhook_url": "https://hooks.example.com/x"},
        experiment="champion-monitoring",
        namespace="team-a",
    )
    assert second.replaced == [first.recurring_run_id]
    assert len(kfp.recurring_runs) == 1
    run = next(iter(kfp.recurring_runs.values()))
    assert (
        run["trigger"] == {"cron_schedule": {"cron": "0 30 5 * * *"}}
        and run["no_catchup"] is True
        and run["max_concurrency"] == "1"
    )
    assert (
        run["runtime_config"]["parameters"]["webhook_url"] == "https://hooks.example.com/x" and run["mode"] == "ENABLE"
    )
    assert next(iter(kfp.experiments.values()))["namespace"] == "team-a"
    schedule(
        client,
        name="weekly",
        pipeline_name="champion-scheduled-eval",
        cron="0 0 6 * * 1",
        params={},
        experiment="champion-monitoring",
        namespace="team-a",
    )
    assert len(kfp.recurring_runs) == 2


@pytest.mark.parametrize(
    "cron, message", [("0 6 * * *", "5 fields"), ("every day", "not a 6-field"), ("0 0 6 * * * *", "not a 6-field")]
)
def test_bad_cron_is_refused_before_any_call(cron, message):
    with pytest.raises(KubeflowError, match=message):
        check_cron(cron)


def test_schedule_before_upload_says_what_to_do(kfp):
    with pytest.raises(KubeflowError, match="not uploaded") as info:
        schedule(
            client_for(kfp),
            name="nightly",
            pipeline_name="champion-scheduled-eval",
            cron="0 0 6 * * *",
            params={},
            experiment="x",
        )
    assert "champion upload" in info.value.fix


def test_submit_and_wait_reports_success_and_failure(kfp, packages):
    client = client_for(kfp)
    kfp.run_polls = 2
    kfp.run_outcome = lambda run: (
        ("FAILED", "step skip-deploy-op failed: GateRejected: the gate rejected the bundle")
        if "evasive" in run["runtime_config"]["parameters"]["prompt"]
        else ("SUCCEEDED", "")
    )
    good = submit_and_wait(
        client,
        packages / "promotion.yaml",
        run_name="ci-good",
        arguments={"prompt": "qa-oneline", "promote": False},
        experiment="champion-ci",
        poll_s=0.05,
    )
    assert good.succeeded and good.state == "SUCCEEDED" and good.link.endswith(f"/#/runs/details/{good.run_id}")
    bad = submit_and_wait(
        client,
        packages / "promotion.yaml",
        run_name="ci-bad",
        arguments={"prompt": "qa-evasive", "promote": False},
        experiment="champion-ci",
        poll_s=0.05,
    )
    assert not bad.succeeded and "GateRejected" in bad.message
    body = kfp.runs[bad.run_id]
    assert (
        body["runtime_config"]["parameters"]["promote"] is False
        and body["pipeline_spec"]["pipeline_spec"]["pipelineInfo"]["name"] == "champion-promotion"
    )


# -- change detection on real git repositories ----------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def repo(tmp_path):
    """A repository with champion's prompts, the lock file and models.yaml on main."""
    root = tmp_path / "repo"
    shutil.copytree(PROMPTS_DIR, root / "prompts", ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ci@example.com")
    git(root, "config", "user.name", "CI")
    git(root, "add", ".")
    git(root, "commit", "-qm", "base")
    git(root, "checkout", "-qb", "change")
    return root


def commit(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", message)


def test_a_new_prompt_version_is_one_changed_bundle(repo):
    v2 = yaml.safe_load((repo / "prompts/qa-concise/v1.yaml").read_text()) | {"version": 2}
    (repo / "prompts/qa-concise/v2.yaml").write_text(yaml.safe_dump(v2))
    commit(repo, "qa-concise v2")
    bundles = changed_bundles(repo, "main")
    assert [(b.prompt, b.model) for b in bundles] == [("qa-concise@2", "smollm2")]
    assert bundles[0].path == repo / "prompts/qa-concise/v2.yaml"


def test_a_model_change_in_models_yaml_is_a_changed_bundle(repo):
    (repo / "prompts/models.yaml").write_text("default: smollm2\nprompts:\n  qa-oneline: s3://models/qwen-0.5b\n")
    commit(repo, "qa-oneline on another model")
    assert [(b.prompt, b.model, b.reason) for b in changed_bundles(repo, "main")] == [
        ("qa-oneline@1", "s3://models/qwen-0.5b", "model smollm2 → s3://models/qwen-0.5b")
    ]


def test_no_change_and_an_unknown_ref(repo):
    (repo / "README.md").write_text("docs\n")
    commit(repo, "docs only")
    assert changed_bundles(repo, "main") == []
    with pytest.raises(TriggerError, match="not known"):
        changed_bundles(repo, "origin/nope")


def run_trigger(repo, kfp_url, *extra, summary=None):
    env = {**os.environ, "KFP_TOKEN": "kfp-token"}
    env.pop("GITHUB_STEP_SUMMARY", None)
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "trigger",
        "--changed-since",
        "main",
        "--repo",
        str(repo),
        "--host",
        kfp_url,
        "--param",
        "mlflow_tracking_uri=http://mlflow:5000",
        *extra,
    ]
    if summary:
        command += ["--summary", str(summary)]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=600)


def finished_task(name: str, state: str = "SUCCEEDED") -> dict:
    """One step task of a finished run, as the KFP API's run_details.task_details lists it."""
    return {"run_id": "r", "task_id": name, "display_name": name, "state": state}


def test_trigger_submits_one_gate_only_run_per_changed_bundle_and_fails_on_a_rejection(repo, kfp, tmp_path):
    publish_version_two(repo / "prompts", "qa-oneline", "qa-evasive")
    commit(repo, "new versions")
    kfp.run_outcome = lambda run: (
        (
            "FAILED",
            "step skip-deploy-op failed: GateRejected: the gate rejected the bundle: semantic_similarity below the champion",
        )
        if "poem" in run["runtime_config"]["parameters"]["prompt"]
        else ("SUCCEEDED", "")
    )
    kfp.run_tasks = lambda run: [  # the run's last step: skip_deploy, which fails the run on a rejection
        finished_task(
            "skip-deploy-op", "FAILED" if "poem" in run["runtime_config"]["parameters"]["prompt"] else "SUCCEEDED"
        )
    ]
    summary = tmp_path / "summary.md"
    result = run_trigger(repo, kfp.url, "--timeout", "60", summary=summary)
    assert result.returncode == 1, result.stderr
    runs = sorted(kfp.runs.values(), key=lambda r: r["display_name"])
    assert [r["display_name"].split("-v2-")[0] for r in runs] == ["ci-qa-evasive", "ci-qa-oneline"]
    for run in runs:
        parameters = run["runtime_config"]["parameters"]
        assert (
            parameters["promote"] is False
            and parameters["fail_on_reject"] is True
            and parameters["mlflow_tracking_uri"] == "http://mlflow:5000"
        )
        assert json.loads(parameters["prompt"])["version"] == 2  # sent inline: the cluster image need not hold it
    text = summary.read_text()
    assert (
        "| `qa-evasive@2` | `smollm2` | ❌ failed |" in text
        and "| `qa-oneline@2` | `smollm2` | ✅ passed |" in text
        and "GateRejected" in text
    )


def test_trigger_runs_a_sequential_gates_looks_one_run_each_until_one_decides(repo, kfp, tmp_path):
    """On Kubeflow a look is a run: a look that does not decide ends in the look_again step (the compiled
    pipeline's branch for gate "continue"), and trigger reads that task from the run object and starts the next
    look; the first run that ends otherwise is the bundle's row. Here the cluster (the fake API server) decides
    at look 3 for one bundle and rejects at look 2 for the other."""
    publish_version_two(repo / "prompts", "qa-oneline", "qa-evasive")
    commit(repo, "new versions")

    def evasive(run):
        return "poem" in run["runtime_config"]["parameters"]["prompt"]

    def look(run):
        return int(run["runtime_config"]["parameters"]["look"])

    kfp.run_outcome = lambda run: (
        ("FAILED", "step skip-deploy-op failed: GateRejected: the gate rejected the bundle: token_f1 is worse")
        if evasive(run) and look(run) == 2
        else ("SUCCEEDED", "")
    )
    kfp.run_tasks = lambda run: [
        finished_task("gate-op"),
        finished_task("look-again-op")
        if look(run) < (2 if evasive(run) else 3)
        else finished_task("skip-deploy-op", "FAILED" if evasive(run) else "SUCCEEDED"),
    ]
    summary = tmp_path / "summary.md"
    result = run_trigger(repo, kfp.url, "--timeout", "60", "--param", "gate_config=sequential", summary=summary)
    assert result.returncode == 1, result.stderr
    submitted = sorted(
        (run["display_name"].split("-v2-")[0], look(run), run["display_name"]) for run in kfp.runs.values()
    )
    assert [(prompt, at) for prompt, at, _ in submitted] == [
        ("ci-qa-evasive", 1),
        ("ci-qa-evasive", 2),
        ("ci-qa-oneline", 1),
        ("ci-qa-oneline", 2),
        ("ci-qa-oneline", 3),
    ]
    assert [name.endswith(f"-look{at}") for _, at, name in submitted] == [False, True, False, True, True]
    assert "look 1 did not decide: running look 2" in result.stderr
    text = summary.read_text()
    assert "| `qa-oneline@2` | `smollm2` | ✅ passed | gate passed (decided at look 3, after 2 undecided)" in text
    assert (
        "| `qa-evasive@2` | `smollm2` | ❌ failed |" in text and "token_f1 is worse (decided at look 2, after 1" in text
    )


def test_a_cluster_run_that_succeeds_without_reaching_its_decision_does_not_pass(repo, kfp, tmp_path):
    """Fail closed: a run whose details show neither deploy nor skip_deploy (another pipeline, details missing)
    decided nothing anyone can read, so its bundle's row does not pass, whatever the run's state."""
    publish_version_two(repo / "prompts", "qa-oneline")
    commit(repo, "a new version")
    kfp.run_tasks = lambda run: [finished_task("gate-op")]
    summary = tmp_path / "summary.md"
    result = run_trigger(repo, kfp.url, "--timeout", "60", summary=summary)
    assert result.returncode == 1, result.stderr
    assert "❌ succeeded | the run succeeded without a deploy-op or skip-deploy-op task" in summary.read_text()


def test_a_watched_cluster_run_gets_its_root_span_and_its_step_metrics(kfp, packages, prometheus_binaries, monkeypatch):
    """What ``champion trigger`` adds once the run ends, from the KFP run object: the trace's root (ids from the
    run's UUID, which the steps' own spans are children of) with a span for each step the cache answered, and
    every step's seconds and cache state on a real Pushgateway."""
    from prometheus_client.parser import text_string_to_metric_families

    from champion import tracing
    from tests.otlp import OTLPReceiver
    from tests.prometheus.server import Pushgateway

    def task(name, state, start, end):
        return {
            "run_id": "r",
            "task_id": f"{name}-{start}",
            "display_name": name,
            "create_time": f"2026-11-22T10:00:{start:02d}Z",
            "start_time": f"2026-11-22T10:00:{start:02d}Z",
            "end_time": f"2026-11-22T10:00:{end:02d}Z",
            "state": state,
        }

    kfp.run_tasks = lambda run: [
        task("root", "SUCCEEDED", 0, 40),  # the DAG itself, not a step
        task("pin-inputs-op", "SUCCEEDED", 1, 3),
        task("preprocess-data-op", "SKIPPED", 4, 4),
        task("batch-generate-op", "SUCCEEDED", 5, 20),
        task("batch-generate-op", "SUCCEEDED", 6, 25),
        task("gate-op", "SUCCEEDED", 26, 30),
    ]
    receiver = OTLPReceiver()
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.url)
    tracing.configure()
    try:
        result = submit_and_wait(
            client_for(kfp),
            packages / "promotion.yaml",
            run_name="ci-watched",
            arguments={"prompt": "qa-oneline", "promote": False},
            experiment="champion-ci",
            poll_s=0.05,
        )
        assert "batch-generate-op[1]" in result.steps, result.steps
        second = result.steps["batch-generate-op[1]"]
        assert second["end_ns"] - second["start_ns"] == 19 * 10**9, result.steps
        assert second["state"] == "succeeded" and second["seconds"] == 19.0
        assert list(result.steps) == [
            "pin-inputs-op",
            "preprocess-data-op",
            "batch-generate-op[0]",
            "batch-generate-op[1]",
            "gate-op",
        ]
        with Pushgateway() as gateway:
            where = record_watched_run(
                result, pipeline="champion-promotion", model="champion-qa", pushgateway_url=gateway.url
            )
            pushed = requests.get(f"{gateway.url}/metrics", timeout=10).text
        tracing.shutdown()
    finally:
        monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
        tracing.configure()
        receiver.close()
    assert where == [gateway.url]
    unfinished = RunResult("ci-slow", result.run_id, "TIMEOUT", "still running after 60 s", result.link)
    assert record_watched_run(unfinished, pipeline="champion-promotion", model="champion-qa", pushgateway_url="x") == []
    samples = {
        (s.name, s.labels.get("step"), s.labels.get("kind")): s.value
        for family in text_string_to_metric_families(pushed)
        for s in family.samples
        if s.name.startswith("champion_step")
    }
    assert samples[("champion_step_seconds", "batch-generate-op[0]", "champion-promotion-steps")] == 15.0
    assert samples[("champion_step_cached", "preprocess-data-op", "champion-promotion-steps")] == 1.0
    assert samples[("champion_step_cached", "gate-op", "champion-promotion-steps")] == 0.0
    root, cached = sorted(receiver.spans, key=lambda span: bool(span.parent_span_id))
    assert root.name == "champion-promotion" and root.trace_id.hex() == result.run_id.replace("-", "")
    assert int.from_bytes(root.span_id, "big") == tracing.run_root_span_id(result.run_id)
    assert OTLPReceiver.attributes(root)["champion.outcome"] == "succeeded"
    assert cached.name == "preprocess-data-op" and cached.parent_span_id == root.span_id


def test_trigger_fails_lint_when_a_published_prompt_is_edited_in_place(repo, kfp):
    path = repo / "prompts/qa-concise/v1.yaml"
    path.write_text(path.read_text().replace("a few words at most", "one word"))
    commit(repo, "sneaky edit")
    result = run_trigger(repo, kfp.url)
    assert result.returncode == 2
    assert "qa-concise@1 changed after it was published" in result.stdout and "v2.yaml" in result.stdout
    assert not kfp.runs


def test_trigger_with_nothing_changed_passes(repo, kfp):
    (repo / "notes.txt").write_text("x\n")
    commit(repo, "unrelated")
    result = run_trigger(repo, kfp.url)
    assert result.returncode == 0 and "nothing to evaluate" in result.stdout and not kfp.runs


def test_the_github_workflow_runs_the_trigger_on_prompt_changes():
    workflow = yaml.safe_load((REPO / ".github/workflows/prompt-check.yml").read_text())
    assert workflow[True]["pull_request"]["paths"] == ["prompts/**"]  # YAML reads the key `on` as True
    steps = workflow["jobs"]["gate"]["steps"]
    assert steps[0]["with"]["fetch-depth"] == 0
    trigger = next(step for step in steps if "champion trigger" in step.get("run", ""))
    assert "--changed-since origin/${{ github.base_ref }}" in trigger["run"] and trigger["shell"] == "bash"
    assert trigger["env"]["KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}" and "--promote" not in trigger["run"]
    assert any(step.get("run") == ".venv/bin/champion lint" for step in steps)
