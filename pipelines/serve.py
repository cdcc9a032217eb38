"""``champion serve``: the promoted bundle on this machine, through the same serving code as a cluster.

Two KServe model servers on 127.0.0.1, as on a cluster: the CPU predictor (transformers, in a child
process) and, in front of it, the prompt transformer that applies the bundle's prompt and decoding.
Clients send plain messages to ``http://127.0.0.1:PORT/openai/v1/chat/completions``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from champion.bundle import Bundle
from champion.errors import ChampionError, ModelSourceError, PromptError, ServingError
from champion.weights import fetch_weights
from prompts import PromptTemplate
from registry.registry import find_version
from serving.openai_api import serve
from serving.transformer import PromptTransformer, predictor_url


@dataclass
class ServedBundle:
    name: str
    version: str
    bundle: Bundle
    prompt: PromptTemplate
    model_dir: Path


def prepare(
    tracking_uri: str,
    registered_model_name: str,
    *,
    alias: str = "",
    bundle_id: str = "",
    weights_cache: str | Path | None = None,
    work_dir: Path,
) -> ServedBundle:
    """Find the bundle in MLflow, fetch its weights and prompt, and check both against its digests."""
    import mlflow

    version = find_version(tracking_uri, registered_model_name, alias=alias, bundle_id=bundle_id)
    bundle = Bundle.model_validate(json.loads(version.tags["champion.bundle"]))
    prompt_file = mlflow.artifacts.download_artifacts(
        run_id=version.run_id,
        artifact_path="bundle/prompt.json",
        tracking_uri=tracking_uri,
        dst_path=str(work_dir / bundle.short_id),
    )
    prompt = PromptTemplate.model_validate_json(Path(prompt_file).read_text())
    if prompt.ref != bundle.prompt:
        raise PromptError(
            f"the prompt stored with version {version.version} does not match its bundle's digest.",
            "re-run the pipeline to register the bundle again.",
        )
    fetched = fetch_weights(
        version.tags["champion.weights_source"], work_dir / bundle.short_id / "model", cache_dir=weights_cache
    )
    if fetched.digest != bundle.model_digest:
        raise ModelSourceError(
            f"the weights at {version.tags['champion.weights_source']} have digest {fetched.digest[:12]}, but bundle {bundle.short_id} was evaluated with {bundle.model_digest[:12]}.",
            "the source changed since evaluation: re-run the pipeline on it before serving.",
        )
    return ServedBundle(registered_model_name, str(version.version), bundle, prompt, fetched.path)


def wait_until_ready(
    url: str, process: subprocess.Popen, log_path: Path | None = None, timeout_s: float = 300.0
) -> None:
    """Poll ``url`` until it answers 200; fail early if ``process`` exits (with its log's tail)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:] if log_path else ""
            raise ServingError(
                f"the server exited with status {process.returncode} before it was ready:\n{tail}",
                f"see {log_path or 'its output'}.",
                503,
            )
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise ServingError(f"{url} was not ready after {timeout_s:.0f} s.", f"see {log_path or 'its output'}.", 503)


def ensure_ports_free(host: str, port: int) -> None:
    """Fail before anything starts when the server's port or its predictor's (port + 1) is taken (uvicorn would say
    so only after "Serving on"). Like the servers, the probe sets SO_REUSEADDR: a port a stopped server left in
    TIME_WAIT is free to them, so it is free here too."""
    import socket

    for number, role in ((port, "the server's"), (port + 1, "its predictor's (--port + 1)")):
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, number))
            except OSError as exc:
                raise ServingError(
                    f"port {number} on {host}, {role}, is already in use ({exc.strerror}).",
                    "stop what listens there, or pass --port with a port P such that P and P + 1 are free.",
                    503,
                ) from exc


RESTARTS = 3  # a predictor that dies more often than this in a row is not restarted again


class PredictorSupervisor:
    """Keeps the local predictor running: when its process dies (the kernel's OOM killer, a crash) it is
    restarted with backoff; after RESTARTS failed restarts in a row ``champion serve`` stops with exit status 2
    and says why, instead of answering 503 to every later request."""

    def __init__(self, command: list[str], ready_url: str, log_path: Path) -> None:
        self.command, self.ready_url, self.log_path = command, ready_url, log_path
        self.stopped = threading.Event()
        self.process = self._start()

    def _start(self) -> subprocess.Popen:
        with open(self.log_path, "a", encoding="utf-8") as log:
            return subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
            )

    def wait_ready(self) -> None:
        wait_until_ready(self.ready_url, self.process, self.log_path)

    def watch(self) -> None:
        threading.Thread(target=self._watch, name="predictor-supervisor", daemon=True).start()

    def _watch(self) -> None:
        while not self.stopped.wait(0.5):
            if self.process.poll() is not None and not self._restart():
                print(
                    f"error: the predictor keeps exiting (status {self.process.returncode}) and was restarted "
                    f"{RESTARTS} times; champion serve stops.\nfix: see its log, {self.log_path} (the last lines "
                    "say why: memory, a broken model folder).",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(2)  # the transformer's server owns the main thread: end the process from here

    def _restart(self) -> bool:
        """Start the predictor again, with backoff, until it is ready (True) or RESTARTS tries failed (False)."""
        for attempt in range(1, RESTARTS + 1):
            print(
                f"champion serve: the predictor exited with status {self.process.returncode}; restarting it "
                f"({attempt} of {RESTARTS}, log: {self.log_path})",
                file=sys.stderr,
                flush=True,
            )
            time.sleep(2 ** (attempt - 1))
            if self.stopped.is_set():
                return True
            self.process = self._start()
            try:
                self.wait_ready()
                return True
            except ChampionError:
                continue
        return False

    def stop(self) -> None:
        self.stopped.set()
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def serve_bundle(
    served: ServedBundle,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    predictor_port: int | None = None,
    log_dir: Path,
    request_log=None,
) -> None:
    """Start the predictor, wait for it, then run the transformer in this process until interrupted; the
    predictor is supervised meanwhile (restarted when it dies)."""

    predictor_port = predictor_port or port + 1
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"predictor-{served.bundle.short_id}.log"
    log_path.write_text("", encoding="utf-8")
    command = [
        sys.executable,
        "-m",
        "serving.predictor",
        "--model_name",
        served.name,
        "--model_dir",
        str(served.model_dir),
        "--http_port",
        str(predictor_port),
        "--host",
        host,
    ]
    predictor = PredictorSupervisor(command, f"http://{host}:{predictor_port}/v1/models/{served.name}", log_path)
    try:
        predictor.wait_ready()
        predictor.watch()
        transformer = PromptTransformer(
            served.name,
            served.prompt,
            predictor_url(f"{host}:{predictor_port}"),
            bundle_id=served.bundle.id,
            model_digest=served.bundle.model_digest,
            request_log=request_log,
        )
        serve([transformer], host=host, port=port)
    finally:
        predictor.stop()
