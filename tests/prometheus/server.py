"""A real Prometheus (Debian's ``prometheus`` package) on 127.0.0.1 for the monitoring tests.

``Prometheus(targets)`` writes a config that scrapes each ``host:port`` target's ``/metrics`` every second,
starts the server on a free port with its data in a temporary folder, and waits until it is ready.
``query(promql)`` runs an instant query through the HTTP API (``/api/v1/query``) and returns its result
vector; ``wait_for(promql, predicate)`` polls until the result satisfies the predicate.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import requests
import yaml

MISSING = (
    "no prometheus/promtool/prometheus-pushgateway on PATH: install Debian's packages (`apt-get install prometheus "
    "prometheus-pushgateway`; `.ci/run` does) to run the monitoring tests against a real Prometheus"
)


def binaries() -> tuple[str, ...] | None:
    found = tuple(shutil.which(name) or "" for name in ("prometheus", "promtool", "prometheus-pushgateway"))
    return found if all(found) else None


class Prometheus:
    def __init__(
        self,
        targets: list[str],
        *,
        rule_files: list[Path] = (),
        honor_labels: bool = False,
        metrics_path: str = "/metrics",
    ) -> None:
        from tests.conftest import free_port

        self.folder = Path(tempfile.mkdtemp(prefix="prometheus-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [
                {
                    "job_name": "champion",
                    "honor_labels": honor_labels,
                    "metrics_path": metrics_path,
                    "static_configs": [{"targets": targets}],
                }
            ],
        }
        if rule_files:
            config["rule_files"] = [str(path) for path in rule_files]
        (self.folder / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                "prometheus",
                f"--config.file={self.folder / 'prometheus.yml'}",
                f"--storage.tsdb.path={self.folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-lifecycle",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(self.folder / "prometheus.log", "w"),
        )

    def __enter__(self) -> Prometheus:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("prometheus exited: " + (self.folder / "prometheus.log").read_text()[-2000:])
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError("prometheus did not become ready in 30 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        shutil.rmtree(self.folder, ignore_errors=True)

    def query(self, promql: str) -> list[dict]:
        response = requests.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=10)
        body = response.json()
        if body.get("status") != "success":
            raise AssertionError(f"{promql}: {body}")
        return body["data"]["result"]

    def alerts(self) -> list[dict]:
        return requests.get(f"{self.url}/api/v1/alerts", timeout=10).json()["data"]["alerts"]

    def wait_for(self, promql: str, predicate, timeout_s: float = 30.0) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            result = self.query(promql)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise AssertionError(f"{promql} never satisfied the test; last result {result}")
            time.sleep(0.5)


class Pushgateway:
    """Debian's ``prometheus-pushgateway`` on a free 127.0.0.1 port (what a cluster's runs push to)."""

    def __init__(self) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{self.port}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def __enter__(self) -> Pushgateway:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{self.url}/-/ready", timeout=1).status_code == 200:
                    return self
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError("the pushgateway did not become ready in 30 s")

    def __exit__(self, *exc) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
