"""Local runs with every step in the champion image: kfp.local's ``DockerRunner``, set up for champion.

``champion run --runner docker`` runs each task in a container of its component's image (the CPU image
that ``make images`` builds and tags as ``images/refs.env`` names it), the way a cluster would, instead of as
a subprocess of this virtual environment. The containers:

- run as uid 1000, the image's own user (when the command runs as root the workspace is handed to that
  user, since the containers write into it); as the invoking user otherwise, so their files stay theirs;
- have no network (``network_mode=none``): a local run is offline, in a container too;
- see the run's workspace, its caches and the inputs named by path at the same paths as this machine
  (inputs read-only), and nothing else of the host: not the checkout, not this virtual environment.

The Docker engine's own record says where each task ran: ``ContainerLedger`` follows the engine's events
for the run's containers (labelled with the run's id) and inspects each one as it starts, so a run's
summary lists, per task, the container id, the image and its id, the user and the network.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal

from champion.errors import ChampionError

Runner = Literal["subprocess", "docker"]
RUN_LABEL = "io.champion.run-id"
IMAGE_USER = 1000  # the image's user (images/cpu.Dockerfile)
# What a step reads from its environment; the containers get these and nothing else of this machine's.
PASSED_PREFIXES = ("CHAMPION_", "OTEL_", "HF_", "TRANSFORMERS_", "MLFLOW_")
PASSED_NAMES = ("RAGAS_DO_NOT_TRACK", "DO_NOT_TRACK", "TOKENIZERS_PARALLELISM", "TQDM_DISABLE")


class DockerUnavailable(ChampionError):
    """No Docker engine answers, or the image the steps name is not on it."""


def docker_client():
    """A client of the local Docker engine, or an error that says how to get one."""
    try:
        import docker
    except ImportError as exc:
        raise DockerUnavailable(
            "--runner docker needs the Docker SDK for Python, which is not installed.",
            "pip install docker (it comes with champion's dev extra), or run without --runner docker.",
        ) from exc
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:
        raise DockerUnavailable(
            f"no Docker engine answers ({type(exc).__name__}: {exc}).",
            "start dockerd (Debian: apt-get install docker.io, then dockerd as root) or set DOCKER_HOST, "
            "or run without --runner docker.",
        ) from exc
    return client


def require_image(client, image: str) -> dict:
    """The image's engine record; an error naming ``make images`` when it was never built here."""
    import docker

    try:
        return client.images.get(image).attrs
    except docker.errors.ImageNotFound as exc:
        raise DockerUnavailable(
            f"the image the steps run in, {image}, is not on this Docker engine.",
            "build it with `make images` (or pull it from your registry), then run again.",
        ) from exc


def step_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The variables a step reads (offline switches, the run's id, error and cancel files, caches)."""
    environ = dict(os.environ if environ is None else environ)
    return {name: value for name, value in environ.items() if name.startswith(PASSED_PREFIXES) or name in PASSED_NAMES}


def container_user(uid: int | None = None, gid: int | None = None) -> tuple[str, bool]:
    """The user the containers run as, and whether the mounted folders must be handed to it first
    (only when this command runs as root: root's files are not writable by the image's user)."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if uid == 0:
        return f"{IMAGE_USER}:{IMAGE_USER}", True
    return f"{uid}:{gid}", False


def _mount(path: Path, read_only: bool):
    from docker.types import Mount

    return Mount(target=str(path), source=str(path), type="bind", read_only=read_only)


def input_paths(arguments: dict[str, Any]) -> list[Path]:
    """The local files and folders the pipeline's arguments name (absolute after pipeline_arguments)."""
    found = []
    for value in arguments.values():
        if isinstance(value, str) and value.startswith("/") and Path(value).exists():
            found.append(Path(value))
    return found


def _outermost(paths: Iterable[Path]) -> list[Path]:
    """The paths with every one inside another left out (a folder's mount already shows what it holds)."""
    unique = sorted({p.resolve() for p in paths}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in unique:
        if not any(path == outer or outer in path.parents for outer in kept):
            kept.append(path)
    return kept


def hand_over(folders: Iterable[Path], uid: int = IMAGE_USER) -> None:
    """Make the folders the containers write into theirs (only when this command runs as root)."""
    for folder in folders:
        for root, dirs, files in os.walk(folder):
            os.chown(root, uid, uid)
            for name in dirs + files:
                with contextlib.suppress(FileNotFoundError):
                    os.chown(os.path.join(root, name), uid, uid, follow_symlinks=False)


def docker_runner(*, image: str, run_id: str, writable: list[Path], read_only: list[Path]):
    """kfp.local's DockerRunner for a champion run: the image's user, no network, the run's folders."""
    from kfp import local

    client = docker_client()
    require_image(client, image)
    user, must_hand_over = container_user()
    writable = _outermost(writable)
    read_only = [p for p in _outermost(read_only) if not any(p == w or w in p.parents for w in writable)]
    for folder in writable:
        folder.mkdir(parents=True, exist_ok=True)
    if must_hand_over:
        hand_over(writable)
    environment = step_environment()
    if not user.startswith(f"{IMAGE_USER}:"):
        environment["HOME"] = "/tmp"  # the image's home belongs to its own user
    return local.DockerRunner(
        user=user,
        network_mode="none",
        environment=environment,
        labels={RUN_LABEL: run_id},
        mounts=[_mount(p, False) for p in writable] + [_mount(p, True) for p in read_only],
    )


def stop_containers(run_id: str, timeout_s: int = 5) -> list[str]:
    """Stop every container of the run (a cancelled run); the ids stopped."""
    with contextlib.suppress(DockerUnavailable):
        client = docker_client()
        stopped = []
        for container in client.containers.list(filters={"label": f"{RUN_LABEL}={run_id}"}):
            with contextlib.suppress(Exception):  # it may have ended on its own meanwhile
                container.stop(timeout=timeout_s)
                stopped.append(container.id)
        return stopped
    return []


def _task_of(command: list[str]) -> tuple[str, str]:
    """The task a KFP container runs and its run folder, from its executor input: the output file sits in
    ``<pipeline root>/<run folder>/<task>/``."""
    try:
        executor_input = json.loads(command[command.index("--executor_input") + 1])
        output = Path(executor_input["outputs"]["outputFile"])
        return output.parent.name, output.parent.parent.name
    except (ValueError, IndexError, KeyError, TypeError):
        return "", ""


@dataclass
class ContainerLedger:
    """Which container ran which task, as the Docker engine recorded it (events and inspection)."""

    run_id: str
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    @contextlib.contextmanager
    def following(self):
        client = docker_client()
        events = client.events(
            decode=True, filters={"type": "container", "event": ["start", "die"], "label": f"{RUN_LABEL}={self.run_id}"}
        )
        self._thread = threading.Thread(target=self._follow, args=(client, events), daemon=True)
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            with contextlib.suppress(Exception):
                events.close()
            self._thread.join(timeout=5)

    def _follow(self, client, events) -> None:
        with contextlib.suppress(Exception):  # the stream ends when closed
            for event in events:
                if self._stop.is_set():
                    break
                self._record(client, event)

    def _record(self, client, event: dict) -> None:
        container_id = event.get("id", "")
        if event.get("status") == "start" or event.get("Action") == "start":
            with contextlib.suppress(Exception):  # a container that already ended was removed (auto_remove)
                attrs = client.containers.get(container_id).attrs
                task, run_folder = _task_of(attrs["Config"].get("Cmd") or [])
                self.containers[container_id] = {
                    "task": task,
                    "run_folder": run_folder,
                    "container": container_id,
                    "image": attrs["Config"]["Image"],
                    "image_id": attrs["Image"],
                    "user": attrs["Config"]["User"],
                    "network": attrs["HostConfig"]["NetworkMode"],
                }
        elif container_id in self.containers:
            self.containers[container_id]["exit_code"] = int(
                event.get("Actor", {}).get("Attributes", {}).get("exitCode", -1)
            )

    def by_task(self, label: Callable[[str, str], str]) -> dict[str, dict[str, Any]]:
        """Each task's container, keyed by ``label(task, run folder)`` (the run's own name for the task)."""
        found = {}
        for entry in self.containers.values():
            if entry["task"]:
                task = label(entry["task"], entry["run_folder"])
                found[task] = {key: value for key, value in entry.items() if key != "run_folder"} | {"task": task}
        return found


def with_images(pipeline_func, images: dict[str, str]):
    """The same pipeline with its steps' images replaced (``{old: new}``), for a local run: no GPU here,
    so the GPU steps run in the CPU image, which holds the same code (the transformers backend)."""
    import copy

    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    graph = pipeline_spec_pb2.PipelineSpec()
    graph.CopyFrom(pipeline_func.pipeline_spec)
    deployment = json_format.MessageToDict(graph.deployment_spec)
    for executor in deployment.get("executors", {}).values():
        container = executor.get("container", {})
        container["image"] = images.get(container.get("image", ""), container.get("image", ""))
    graph.deployment_spec.Clear()
    graph.deployment_spec.update(deployment)
    clone = copy.copy(pipeline_func)
    clone.component_spec = copy.copy(pipeline_func.component_spec)
    clone.component_spec.implementation = copy.copy(pipeline_func.component_spec.implementation)
    clone.component_spec.implementation.graph = graph
    return clone
