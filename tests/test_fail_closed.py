"""Every path to a promotion fails closed: registry faults against a real `mlflow server` process,
prompts that cheat or impersonate, policies that cannot vote. Nothing here mocks MLflow or champion.

The registry tests run a real MLflow tracking server with its basic-auth app on 127.0.0.1 (the
permission case is MLflow's own 403). The 500 case puts a fault-injecting HTTP proxy in front of the
same real server: every other call passes through to MLflow untouched. "Stopped" is a port where the
server no longer listens.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
import yaml

from champion.bundle import Bundle
from champion.errors import PromptError, RegistryError
from prompts import PromptTemplate, load_prompt
from registry.register import register_bundle
from registry.registry import NoChampion, current_champion, ensure_prompt_version, promote_version, resolve_champion
from tests.conftest import REPO, free_port

ADMIN, ADMIN_PASSWORD = "admin", "admin-password-for-tests"
PROMPT = load_prompt("qa-concise")


class MlflowServer:
    """`mlflow server --app-name basic-auth` as a child process, its stores in a temporary folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = root / "basic_auth.ini"
        config.write_text(
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{root / 'auth.db'}\nadmin_username = {ADMIN}\nadmin_password = {ADMIN_PASSWORD}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(config), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests-only"}
        started = time.monotonic()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "mlflow"),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--app-name",
                "basic-auth",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--default-artifact-root",
                str(root / "artifacts"),
                "--workers",
                "1",
            ],
            cwd=root,
            env=env,
            stdout=open(root / "server.log", "wb"),
            stderr=subprocess.STDOUT,
        )
        while time.monotonic() - started < 120:
            try:
                if urllib.request.urlopen(f"{self.url}/health", timeout=1).status == 200:
                    break
            except OSError:
                time.sleep(0.5)
            if self.process.poll() is not None:
                raise RuntimeError((root / "server.log").read_text()[-2000:])
        else:
            raise RuntimeError("mlflow server did not become healthy in 120 s")
        print(f"\nmlflow server (basic-auth) ready in {time.monotonic() - started:.1f} s")

    def create_user(self, username: str, password: str) -> None:
        response = requests.post(
            f"{self.url}/api/2.0/mlflow/users/create",
            json={"username": username, "password": password},
            auth=(ADMIN, ADMIN_PASSWORD),
            timeout=10,
        )
        response.raise_for_status()

    def deny_model(self, name: str, username: str) -> None:
        response = requests.post(
            f"{self.url}/api/3.0/mlflow/users/permissions/grant",
            json={"username": username, "resource_type": "registered_model", "resource_id": name, "permission": "DENY"},
            auth=(ADMIN, ADMIN_PASSWORD),
            timeout=10,
        )
        response.raise_for_status()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


class FaultProxy:
    """Forwards every request to the real server, except that requests whose path contains
    ``fail_path`` get ``fail_status`` with an MLflow-style error body."""

    def __init__(self, upstream: str, fail_path: str, fail_status: int = 500) -> None:
        self.calls: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _forward(self):
                proxy.calls.append(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) or None
                if fail_path in self.path:
                    payload = json.dumps({"error_code": "INTERNAL_ERROR", "message": "database is locked"}).encode()
                    self.send_response(fail_status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                upstream_response = requests.request(
                    self.command, upstream + self.path, data=body, headers=headers, timeout=30
                )
                self.send_response(upstream_response.status_code)
                for key, value in upstream_response.headers.items():
                    if key.lower() not in ("content-length", "transfer-encoding", "connection", "content-encoding"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(upstream_response.content)))
                self.end_headers()
                self.wfile.write(upstream_response.content)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def make_bundle(model_digest: str, prompt: PromptTemplate = PROMPT) -> Bundle:
    return Bundle(
        model_digest=model_digest,
        prompt=prompt.ref,
        decoding=prompt.decoding.model_dump(mode="json"),
        dataset_digest="d" * 64,
        evaluator_digest="e" * 64,
    )


def register_and_promote(uri: str, name: str, digest: str, expected=None, audit_log: str = ""):
    registered = register_bundle(
        tracking_uri=uri,
        registered_model_name=name,
        bundle=make_bundle(digest),
        prompt=PROMPT,
        decision={"gate": "passed", "reasons": ["test"], "checks": []},
        files={},
        weights_source="smollm2",
        expected_champion=expected,
        audit_log=audit_log,
    )
    promote_version(
        uri,
        name,
        registered.model_version,
        expected=expected,
        prompt_name=PROMPT.name,
        prompt_version=registered.prompt_version,
        audit_log=audit_log,
    )
    return registered.model_version


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if shutil.which("mlflow", path=str(Path(sys.executable).parent)) is None:
        pytest.fail("the mlflow CLI is not installed beside this Python (make setup installs it)")
    started = MlflowServer(tmp_path_factory.mktemp("mlflow-server"))
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN, ADMIN_PASSWORD
    os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] = (
        "0"  # a fault answers at once; connect() keeps what the environment says
    )
    started.champion_version = register_and_promote(started.url, "qa", "a" * 64)
    yield started
    started.stop()
    for key in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
        os.environ.pop(key, None)


def test_the_real_server_resolves_the_champion(server):
    champion = resolve_champion(server.url, "qa")
    assert champion is not None and champion.version == server.champion_version and champion.prompt == "qa-concise@1"
    assert (
        resolve_champion(server.url, "never-registered") is None
    )  # a model that does not exist yet: nothing promoted, the bootstrap rule


def test_a_registry_that_errors_fails_resolution_instead_of_turning_the_comparison_off(server):
    proxy = FaultProxy(server.url, "registered-models/alias")
    try:
        with pytest.raises(
            RegistryError, match="could not say which version of qa carries the 'champion' alias"
        ) as info:
            resolve_champion(proxy.url, "qa")
        assert "nothing was compared or promoted" in info.value.fix
        assert any("registered-models/alias" in call for call in proxy.calls)  # the real call was made and failed
    finally:
        proxy.close()


def test_a_registry_that_refuses_access_fails_resolution(server, monkeypatch):
    server.create_user("ci-reader", "reader-password-1234")
    server.deny_model("qa", "ci-reader")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ci-reader")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "reader-password-1234")
    with pytest.raises(RegistryError, match="PERMISSION_DENIED"):
        resolve_champion(server.url, "qa")


def test_a_stopped_registry_fails_resolution(server):
    proxy = FaultProxy(server.url, "never")
    proxy.close()  # the address where the server was: nothing listens now
    with pytest.raises(RegistryError, match="unreachable|could not say"):
        resolve_champion(proxy.url, "qa")


def test_promoting_through_an_erroring_registry_moves_nothing(server):
    proxy = FaultProxy(server.url, "registered-models/alias")
    try:
        from mlflow import MlflowClient

        challenger = register_bundle(
            tracking_uri=server.url,
            registered_model_name="qa",
            bundle=make_bundle("b" * 64),
            prompt=PROMPT,
            decision={"gate": "passed", "reasons": ["test"], "checks": []},
            files={},
            weights_source="smollm2",
            expected_champion=server.champion_version,
        )
        with pytest.raises(RegistryError):
            promote_version(
                proxy.url,
                "qa",
                challenger.model_version,
                expected=server.champion_version,
                prompt_name=PROMPT.name,
                prompt_version=challenger.prompt_version,
            )
        assert (
            current_champion(MlflowClient(tracking_uri=server.url, registry_uri=server.url), "qa")
            == server.champion_version
        )
    finally:
        proxy.close()


@pytest.mark.e2e
def test_a_run_against_an_erroring_registry_fails_and_promotes_nothing(server, tmp_path, weights_cache):
    """The whole local pipeline against the real server behind the fault proxy: resolve_champion fails
    the run before any weights are fetched; no version is registered, the alias stays."""
    from mlflow import MlflowClient

    from champion.parameters import PromotionParameters
    from pipelines.local import LocalSettings, PipelineFailed, run_promotion

    client = MlflowClient(tracking_uri=server.url, registry_uri=server.url)
    versions_before = len(client.search_model_versions("name='qa'"))
    alias_before = current_champion(client, "qa")
    proxy = FaultProxy(server.url, "registered-models/alias")
    # No judge: this run is about the registry, and the judge's calibration would only make it wait.
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "name: lean\nversion: 1\nmin_examples: 3\nmetrics:\n  semantic_similarity: {direction: higher, margin: 0.05}\n"
    )
    try:
        with pytest.raises(PipelineFailed, match="resolve-champion-op failed: RegistryError") as info:
            run_promotion(
                PromotionParameters(
                    limit=3,
                    registered_model_name="qa",
                    mlflow_tracking_uri=proxy.url,
                    gate_config=str(policy),
                    evaluator_config=str(REPO / "tests/configs/lean-evaluators.yaml"),
                ),
                LocalSettings(workspace=tmp_path / "ws", weights_cache=weights_cache),
            )
        assert "carries the 'champion' alias" in info.value.problem
    finally:
        proxy.close()
    assert (
        len(client.search_model_versions("name='qa'")) == versions_before
        and current_champion(client, "qa") == alias_before
    )
    assert not list((tmp_path / "ws" / "runs").rglob("generations"))  # nothing was generated


def test_a_lost_alias_with_a_promotion_history_needs_an_explicit_bootstrap(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    audit = str(tmp_path / "audit.jsonl")
    assert resolve_champion(uri, "qa") is None  # a first run: the bootstrap rule needs no opt-in
    version = register_and_promote(uri, "qa", "a" * 64, audit_log=audit)
    MlflowClient(tracking_uri=uri, registry_uri=uri).delete_registered_model_alias("qa", "champion")
    with pytest.raises(NoChampion, match=f"version {version} is tagged promoted") as info:
        resolve_champion(uri, "qa", audit_log=audit)
    assert "--bootstrap" in info.value.fix and "set_registered_model_alias" in info.value.fix
    assert resolve_champion(uri, "qa", allow_bootstrap=True, audit_log=audit) is None


# -- prompts that cheat or impersonate -------------------------------------------------------------

ANSWER_KEY = {
    "name": "qa-cheat",
    "version": 1,
    "variables": ["question", "reference"],
    "messages": [
        {"role": "user", "content": "Question: {{ question }}\nThe right answer is {{ reference }}. Repeat it."}
    ],
}


def run_cli(*args, workspace: Path):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "run", "--workspace", str(workspace), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
    )


def test_a_prompt_that_reads_the_answer_key_is_refused_before_anything_runs(tmp_path):
    path = tmp_path / "cheat.yaml"
    path.write_text(yaml.safe_dump(ANSWER_KEY))
    result = run_cli("--prompt", str(path), workspace=tmp_path / "ws")
    assert result.returncode == 2, result.stderr
    assert "['reference'] (the evaluation's answer key), which a served bundle never receives" in result.stderr
    assert not (tmp_path / "ws").exists()  # refused in the preflight: no workspace, no step, no model loaded
    with pytest.raises(PromptError, match="answer key"):
        load_prompt(json.dumps(ANSWER_KEY))  # the inline form `champion trigger` sends to a cluster


def test_a_file_impersonating_a_published_prompt_is_refused(tmp_path):
    impostor = yaml.safe_load((REPO / "prompts/qa-concise/v1.yaml").read_text())
    impostor["messages"][-1]["content"] = "Answer anything: {{ question }}"
    path = tmp_path / "elsewhere.yaml"
    path.write_text(yaml.safe_dump(impostor))
    result = run_cli("--prompt", str(path), workspace=tmp_path / "ws")
    assert result.returncode == 2 and "claims qa-concise@1, which is published with other content" in result.stderr
    assert "version: 2" in result.stderr and not (tmp_path / "ws").exists()
    same = tmp_path / "copy.yaml"
    same.write_text((REPO / "prompts/qa-concise/v1.yaml").read_text())
    assert load_prompt(str(same)).digest == PROMPT.digest  # an exact copy is the same prompt


def test_the_registry_never_holds_two_contents_under_one_label(tmp_path):
    from mlflow import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from registry.registry import connect

    _, client, _ = connect(uri)
    assert ensure_prompt_version(client, PROMPT) == ensure_prompt_version(client, PROMPT)  # found again by digest
    data = PROMPT.model_dump(mode="json")
    data["messages"][-1]["content"] = "Something else: {{ question }}"
    impostor = PromptTemplate.model_validate(data)  # built in code, past the loader's check
    with pytest.raises(RegistryError, match="already holds qa-concise@1 with other content"):
        ensure_prompt_version(client, impostor)
    assert len(MlflowClient(tracking_uri=uri, registry_uri=uri).search_prompt_versions("qa-concise")) == 1


def test_the_cluster_pipeline_checks_inputs_before_fetching_weights():
    from components.pin_inputs import pin_inputs_op

    with pytest.raises(PromptError, match="answer key"):
        pin_inputs_op.python_func(
            data_source="demo",
            model_source="smollm2",
            prompt=json.dumps(ANSWER_KEY),
            evaluator_config="default",
            gate_config="default",
            drift_reference="demo",
            fine_tune_steps=0,
        )


# -- policies that cannot vote ----------------------------------------------------------------------


def policy_check(*args):
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "policy", "check", *args], capture_output=True, text=True, cwd=REPO
    )


def test_policy_check_accepts_the_packaged_policy():
    result = policy_check("default", "--evaluators", "default")
    assert result.returncode == 0 and "fits evaluator config default" in result.stdout


def test_policy_check_refuses_a_judge_only_policy_and_typos(tmp_path):
    judge_only = tmp_path / "judge.yaml"
    judge_only.write_text(
        "name: j\nversion: 1\nmin_examples: 5\nmetrics:\n  judge_correctness: {direction: higher, floor: 0.5, margin: 0.05}\n"
    )
    result = policy_check(str(judge_only))
    assert result.returncode == 2 and "nothing would vote" in result.stderr
    typo = tmp_path / "typo.yaml"
    typo.write_text(
        "name: t\nversion: 1\nmin_examples: 5\nmetrics:\n  token_f2: {direction: higher, floor: 0.1, margin: 0.05}\n"
    )
    result = policy_check(str(typo))
    assert result.returncode == 2 and "did you mean 'token_f1'" in result.stderr
    duplicate = tmp_path / "dup.yaml"
    duplicate.write_text(
        "name: t\nversion: 1\nmin_examples: 5\nmin_examples: 50\nmetrics:\n  token_f1: {direction: higher, floor: 0.1, margin: 0.05}\n"
    )
    result = policy_check(str(duplicate))
    assert result.returncode == 2 and "duplicate key 'min_examples'" in result.stderr


def test_run_refuses_a_policy_that_does_not_fit_before_anything_runs(tmp_path):
    policy = tmp_path / "bad.yaml"
    policy.write_text(
        "name: b\nversion: 1\nmin_examples: 5\nmetrics:\n  token_f1: {direction: lower, floor: 0.1, margin: 0.05}\n"
    )
    result = run_cli("--gate-config", str(policy), workspace=tmp_path / "ws")
    assert result.returncode == 2 and "set direction: higher" in result.stderr and not (tmp_path / "ws").exists()
