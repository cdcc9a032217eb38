"""Kubeflow Pipelines as champion uses it: upload, schedule, submit and wait, through ``kfp.Client``.

Authentication, in this order: a bearer token from an environment variable (``KFP_TOKEN`` by
default: a repository secret in CI, never a command-line value); inside a cluster, the pod's
projected service-account token (``ServiceAccountTokenVolumeCredentials``); otherwise
``kfp.Client``'s own kubeconfig path (the Kubernetes API proxy). ``namespace`` selects the profile
namespace of a multi-user Kubeflow.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from champion import tracing
from champion.digests import sha256_json
from champion.errors import ChampionError
from champion.provenance import git_commit
from components import by_task_name
from components import registry as step_registry
from prompts.lock import current_digests
from registry.run_metrics import export, step_metrics

DEFAULT_TOKEN_ENV = "KFP_TOKEN"
SA_TOKEN_PATH = "/var/run/secrets/kubeflow/pipelines/token"


class KubeflowError(ChampionError):
    """The Kubeflow Pipelines API refused or failed a request."""


@dataclass
class Connection:
    host: str = ""
    namespace: str = ""
    token_env: str = DEFAULT_TOKEN_ENV
    ui_host: str = ""


def connect(connection: Connection):
    import warnings

    import kfp

    warnings.filterwarnings("ignore", message="This client only works with Kubeflow Pipeline", category=FutureWarning)
    token = os.environ.get(connection.token_env, "")
    options: dict = {"host": connection.host or None, "ui_host": connection.ui_host or None}
    if connection.namespace:
        options["namespace"] = connection.namespace
    if token:
        options["existing_token"] = token
    elif Path(os.environ.get("KF_PIPELINES_SA_TOKEN_PATH", SA_TOKEN_PATH)).is_file():
        from kfp.client import ServiceAccountTokenVolumeCredentials

        options["credentials"] = ServiceAccountTokenVolumeCredentials(path=None)
    if connection.host:
        _check_reachable(connection.host, token)
    try:
        return kfp.Client(**options)
    except Exception as exc:
        raise _api_error("connect", exc, connection.host) from exc


def _check_reachable(host: str, token: str) -> None:
    """One quick call before kfp.Client's own health check, which retries for half a minute and then
    reports every failure (a bad token included) as a timeout."""
    import requests

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = requests.get(host.rstrip("/") + "/apis/v2beta1/healthz", headers=headers, timeout=10)
    except requests.RequestException as exc:
        raise _api_error("connect", exc, host) from exc
    if response.status_code != 200:
        raise _api_error("connect", _HTTPFailure(response.status_code, response.text), host)


class _HTTPFailure(Exception):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status, self.body = status, body


def _api_error(action: str, exc: Exception, host: str = "") -> KubeflowError:
    status = getattr(exc, "status", None)
    body = str(getattr(exc, "body", "") or exc)[:300]
    where = f"Kubeflow Pipelines at {host}" if host else "Kubeflow Pipelines"
    if status == 401:
        return KubeflowError(
            f"{where} refused the credentials ({action}: 401).",
            f"set ${DEFAULT_TOKEN_ENV} (or --token-env) to a valid token, e.g. `kubectl create token` for your service account.",
        )
    if status == 403:
        return KubeflowError(
            f"{where} forbids {action} (403): {body}",
            "use a namespace your identity is a contributor of (--namespace), or ask the profile owner for access.",
        )
    if status == 404:
        return KubeflowError(
            f"{where}: {action}: not found (404): {body}",
            "check --host (it should end at the API root, e.g. https://kubeflow.example.com/pipeline) and the names given.",
        )
    if status == 409:
        return KubeflowError(
            f"{where}: {action}: already exists (409): {body}", "pick a new name or version, or leave it as it is."
        )
    if status is not None:
        return KubeflowError(
            f"{where}: {action} failed with HTTP {status}: {body}",
            "retry; if it persists check the ml-pipeline API server's logs.",
        )
    return KubeflowError(
        f"{where} is unreachable ({action}): {type(exc).__name__}: {exc}"[:400],
        "check --host and the network path (port-forward: kubectl -n kubeflow port-forward svc/ml-pipeline-ui 8080:80).",
    )


def _call(action: str, function, *args, **kwargs):
    import contextlib
    import sys

    try:
        with contextlib.redirect_stdout(sys.stderr):  # kfp.Client prints links; our stdout is for results
            return function(*args, **kwargs)
    except KubeflowError:
        raise
    except Exception as exc:
        raise _api_error(action, exc) from exc


def _eq_filter(key: str, value: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": key, "string_value": value}]})


# -- naming ----------------------------------------------------------------------------------


def name_commit(repo: Path = Path(".")) -> str:
    """The short commit of ``repo`` for version and run names ("nogit" outside a checkout)."""

    commit = git_commit(repo, short=True)
    return "nogit" if commit == "unknown" else commit


def prompts_hash(prompts_root: Path | None = None) -> str:
    """One hash over every prompt version's digest: which prompt bundle a pipeline version was built with."""

    digests, _ = current_digests(prompts_root) if prompts_root else current_digests()
    return sha256_json(digests)[:8]


def version_name(project_version: str, commit: str, prompts: str) -> str:
    return f"v{project_version}-{commit}-p{prompts}"


# -- upload ----------------------------------------------------------------------------------


@dataclass
class Uploaded:
    pipeline: str
    pipeline_id: str
    version: str
    version_id: str
    created_pipeline: bool
    created_version: bool
    link: str


def pipeline_name_of(package: Path) -> str:
    import yaml

    return next(yaml.safe_load_all(package.read_text()))["pipelineInfo"]["name"]  # the IR, then its platform spec


def upload(client, package: Path, version: str, *, namespace: str = "", description: str = "") -> Uploaded:
    """Upload ``package``: a new pipeline the first time, a new version named ``version`` every time
    (an existing version of that name is left as it is: uploading the same commit twice is a no-op)."""
    name = pipeline_name_of(package)
    pipeline_id = _call("look up pipeline", client.get_pipeline_id, name)
    created_pipeline = pipeline_id is None
    if created_pipeline:
        pipeline_id = _call(
            "upload pipeline",
            client.upload_pipeline,
            str(package),
            pipeline_name=name,
            description=description,
            namespace=namespace or None,
        ).pipeline_id
    existing = _call(
        "list versions",
        client.list_pipeline_versions,
        pipeline_id,
        page_size=100,
        filter=_eq_filter("display_name", version),
    )
    match = next((v for v in existing.pipeline_versions or [] if v.display_name == version), None)
    created_version = match is None
    if created_version:
        match = _call(
            "upload pipeline version",
            client.upload_pipeline_version,
            str(package),
            version,
            pipeline_id=pipeline_id,
            description=description,
        )
    assert match is not None  # found, or just uploaded
    link = f"{client._get_url_prefix()}/#/pipelines/details/{pipeline_id}/version/{match.pipeline_version_id}"
    return Uploaded(name, pipeline_id, version, match.pipeline_version_id, created_pipeline, created_version, link)


def latest_version(client, pipeline_name: str):
    pipeline_id = _call("look up pipeline", client.get_pipeline_id, pipeline_name)
    if pipeline_id is None:
        raise KubeflowError(f"pipeline {pipeline_name!r} is not uploaded to Kubeflow.", "run `champion upload` first.")
    versions = (
        _call(
            "list versions", client.list_pipeline_versions, pipeline_id, page_size=1, sort_by="created_at desc"
        ).pipeline_versions
        or []
    )
    if not versions:
        raise KubeflowError(f"pipeline {pipeline_name!r} has no versions.", "run `champion upload`.")
    return pipeline_id, versions[0]


# -- schedule --------------------------------------------------------------------------------

_CRON_FIELD = re.compile(r"^[\d*/,\-?LW#A-Za-z]+$")


def check_cron(cron: str) -> str:
    """KFP's scheduler (robfig/cron) takes 6 fields, seconds first."""
    fields = cron.split()
    if len(fields) == 5:
        raise KubeflowError(
            f"cron {cron!r} has 5 fields; Kubeflow's scheduler wants 6 (seconds first).", f"use {'0 ' + cron!r}."
        )
    if len(fields) != 6 or not all(_CRON_FIELD.match(f) for f in fields):
        raise KubeflowError(
            f"cron {cron!r} is not a 6-field cron expression.",
            "use 'SEC MIN HOUR DAY MONTH WEEKDAY', e.g. '0 0 6 * * *' for 06:00 every day.",
        )
    return cron


@dataclass
class Scheduled:
    name: str
    recurring_run_id: str
    replaced: list[str]
    experiment_id: str
    pipeline_version: str


def schedule(
    client,
    *,
    name: str,
    pipeline_name: str,
    cron: str,
    params: dict,
    experiment: str,
    namespace: str = "",
    max_concurrency: int = 1,
) -> Scheduled:
    """Create or update the recurring run called ``name``: never two with the same name."""
    check_cron(cron)
    if max_concurrency < 1:
        raise KubeflowError(
            f"max concurrency must be at least 1, got {max_concurrency}.",
            "pass --max-concurrency 1 (one evaluation at a time).",
        )
    pipeline_id, version = latest_version(client, pipeline_name)
    experiment_id = _call(
        "create experiment", client.create_experiment, experiment, namespace=namespace or None
    ).experiment_id
    existing = _call(
        "list recurring runs",
        client.list_recurring_runs,
        experiment_id=experiment_id,
        page_size=100,
        filter=_eq_filter("display_name", name),
    )
    replaced = [r.recurring_run_id for r in existing.recurring_runs or [] if r.display_name == name]
    # The v2beta1 API has no update for recurring runs: replace, so the schedule, parameters and
    # pipeline version are exactly what this command says.
    for recurring_run_id in replaced:
        _call("delete recurring run", client.delete_recurring_run, recurring_run_id)
    created = _call(
        "create recurring run",
        client.create_recurring_run,
        experiment_id,
        name,
        description="champion scheduled evaluation of the live champion",
        cron_expression=cron,
        max_concurrency=max_concurrency,
        no_catchup=True,
        params=params,
        pipeline_id=pipeline_id,
        version_id=version.pipeline_version_id,
        enabled=True,
    )
    return Scheduled(name, created.recurring_run_id, replaced, experiment_id, version.display_name)


# -- runs ------------------------------------------------------------------------------------


# A task's runtime state in the KFP API -> the step states the local runner uses (SKIPPED: the cache answered).
TASK_STATES = {"SUCCEEDED": "succeeded", "SKIPPED": "cached", "FAILED": "failed", "CANCELED": "cancelled"}


def _ns(moment: datetime | str | None) -> int:
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1e9) if isinstance(moment, datetime) else 0


def task_timeline(run) -> dict[str, dict]:
    """The run object's step tasks (its ``run_details.task_details``; DAG and driver entries left out), named as
    the local runner names them (a loop's iterations ``task[0]``, ``task[1]``…) with their times and state."""

    details = getattr(getattr(run, "run_details", None), "task_details", None) or []
    steps = sorted(
        (d for d in details if d.display_name in by_task_name() and d.state in TASK_STATES),
        key=lambda d: (_ns(d.start_time or d.create_time), d.display_name),
    )
    runs_of, seen = Counter(d.display_name for d in steps), Counter[str]()
    timeline = {}
    for detail in steps:
        name = detail.display_name
        if runs_of[name] > 1:  # a loop's iterations, in the order they started
            seen[name] += 1
            name = f"{name}[{seen[name] - 1}]"
        start = _ns(detail.start_time or detail.create_time)
        end = _ns(detail.end_time) or start
        timeline[name] = {
            "start_ns": start,
            "end_ns": end,
            "state": TASK_STATES[detail.state],
            "seconds": round((end - start) / 1e9, 2),
        }
    return timeline


@dataclass
class RunResult:
    name: str
    run_id: str
    state: str
    message: str
    link: str
    created_ns: int = 0
    finished_ns: int = 0
    steps: dict[str, dict] = field(default_factory=dict)  # task_timeline of the finished run

    @property
    def succeeded(self) -> bool:
        return self.state.upper() == "SUCCEEDED"

    def _ran(self, *steps: str) -> set[str]:
        """The final states of these steps' tasks in the run (from its task details)."""
        tasks = [step_registry()[step].task_name for step in steps]
        return {self.steps[task]["state"] for task in tasks if task in self.steps}

    @property
    def looks_again(self) -> bool:
        """A sequential gate's look did not decide: the run ended in its look_again step, and the next look is
        another run (pipeline parameter look + 1)."""
        return self.succeeded and "succeeded" in self._ran("look_again")

    @property
    def decided(self) -> bool:
        """The gate decided: the run reached its deploy or skip_deploy step (a rejection fails skip_deploy when
        the run fails on one). A run without either in its details decided nothing anyone can read."""
        return bool(self._ran("deploy", "skip_deploy"))


def record_watched_run(result: RunResult, *, pipeline: str, model: str, pushgateway_url: str = "") -> list[str]:
    """What a run's watcher adds to the run's own telemetry: the root span of its trace (the steps' spans, recorded
    by the steps themselves on the cluster, are its children) with the spans of the steps KFP's cache answered,
    and each step's seconds and cache state pushed beside the gate's series. Where the metrics went."""

    if not (result.created_ns and result.finished_ns):  # still running (timed out waiting): nothing to close yet
        return []
    tracing.record_run(
        pipeline,
        result.steps,
        {"champion.pipeline": pipeline, "champion.model": model, "champion.outcome": result.state.lower()},
        run_id=result.run_id,
        started_ns=result.created_ns,
        ended_ns=result.finished_ns,
    )
    if not pushgateway_url or not result.steps:
        return []
    from prometheus_client import CollectorRegistry

    registry = step_metrics(model, result.steps, CollectorRegistry())
    # Its own group: a push replaces its whole group, and the gate's group is the register step's.
    return export(registry, model=model, kind=f"{pipeline}-steps", pushgateway_url=pushgateway_url)


def submit_and_wait(
    client,
    package: Path,
    *,
    run_name: str,
    arguments: dict,
    experiment: str,
    namespace: str = "",
    timeout_s: float = 3600,
    poll_s: float = 10,
) -> RunResult:
    submitted = _call(
        "create run",
        client.create_run_from_pipeline_package,
        str(package),
        arguments=arguments,
        run_name=run_name,
        experiment_name=experiment,
        namespace=namespace or None,
    )
    try:
        run = client.wait_for_run_completion(
            submitted.run_id, timeout=timeout_s, sleep_duration=poll_s
        )  # prints nothing
    except TimeoutError:
        return RunResult(
            run_name,
            submitted.run_id,
            "TIMEOUT",
            f"still running after {timeout_s:.0f} s",
            f"{client._get_url_prefix()}/#/runs/details/{submitted.run_id}",
        )
    except Exception as exc:
        raise _api_error("wait for run", exc) from exc
    message = (run.error.message if run.error else "") or ""
    return RunResult(
        run_name,
        submitted.run_id,
        run.state or "UNKNOWN",
        message,
        f"{client._get_url_prefix()}/#/runs/details/{submitted.run_id}",
        created_ns=_ns(run.created_at),
        finished_ns=_ns(run.finished_at),
        steps=task_timeline(run),
    )
