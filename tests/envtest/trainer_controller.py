"""A stand-in for Kubeflow Trainer's controller and its torch-distributed runtime, for tests against the real
API server.

There is no Trainer controller, JobSet or node here. For every new TrainJob this thread does what the
controller and the runtime do for one node: it runs the job's own ``trainer.command`` + ``args`` as a local
process with the environment the torch-distributed runtime gives each node (``PET_NNODES``,
``PET_NPROC_PER_NODE``, ``PET_NODE_RANK``, ``PET_MASTER_ADDR``/``PORT``; torchrun reads them), so the
rendered command line really trains, then writes the TrainJob's ``Complete`` or ``Failed`` condition through
the status subresource (validated by the server). The volume patch is honoured by construction: the test
mounts "the PVC" at a local folder and the job's paths point into it. ``processes`` overrides the number of
processes per node (``numProcPerNode`` asks for one per GPU; there is none here).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from serving.kube import TRAIN_JOB
from tests.conftest import free_port


class TrainerStandIn:
    def __init__(self, admin_client, namespace: str, *, processes: int = 1) -> None:
        self.client = admin_client
        self.namespace = namespace
        self.processes = processes
        self.started: list[dict] = []
        self.errors: list[str] = []
        self.logs: dict[str, str] = {}
        self._seen: set[str] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"trainer-standin-{namespace}", daemon=True)

    def __enter__(self) -> TrainerStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=600)

    def _call(self, method: str, path: str, body=None):
        return self.client.call_api(
            path,
            method,
            header_params={"Accept": "application/json", "Content-Type": "application/merge-patch+json"},
            body=body,
            response_type="object",
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
        )

    def _loop(self) -> None:
        from kubernetes.client.exceptions import ApiException

        while not self._stop.is_set():
            try:
                for job in self._call("GET", TRAIN_JOB.path(self.namespace))["items"]:
                    if job["metadata"]["uid"] not in self._seen:
                        self._seen.add(job["metadata"]["uid"])
                        self._run(job)
            except ApiException as exc:
                if exc.status != 404:
                    self.errors.append(f"{exc.status}: {exc.body}")
            time.sleep(0.05)

    def _run(self, job: dict) -> None:
        name, trainer = job["metadata"]["name"], job["spec"]["trainer"]
        self.started.append(job)
        command = [*trainer["command"], *trainer.get("args", [])]
        if command[0] == "torchrun":  # the runtime's torchrun: this interpreter's
            command = [sys.executable, "-m", "torch.distributed.run", *command[1:]]
        env = os.environ | {
            "PET_NNODES": str(trainer.get("numNodes", 1)),
            "PET_NPROC_PER_NODE": str(self.processes),
            "PET_NODE_RANK": "0",
            "PET_MASTER_ADDR": "127.0.0.1",
            "PET_MASTER_PORT": str(free_port()),
            "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
        }
        process = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
        self.logs[name] = process.stdout + process.stderr
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        condition = (
            {"type": "Complete", "status": "True", "reason": "JobsCompleted", "message": "TrainJob is completed"}
            if process.returncode == 0
            else {
                "type": "Failed",
                "status": "True",
                "reason": "TrainingFailed",
                "message": f"node-0 exited with {process.returncode}: {process.stderr.strip()[-300:]}",
            }
        )
        self._call(
            "PATCH",
            TRAIN_JOB.path(self.namespace, name) + "/status",
            {"status": {"conditions": [condition | {"lastTransitionTime": now}]}},
        )
