"""Run the promotion pipeline on this machine through kfp.local: the embedded default.

Every step runs as a subprocess of the current virtual environment (``SubprocessRunner(use_venv=False)``),
with no network: models and data come from installed packages or local paths, MLflow is a sqlite
file in the workspace. The same pipeline function compiles for a Kubeflow cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from champion import tracing
from champion.errors import STEP_ERRORS_ENV, ChampionError, ConfigError, DataError, StepError
from champion.inputs import check_folder
from champion.interrupt import CANCEL_ENV, Interrupted, stop_on_signals
from champion.parameters import PipelineParameters, PromotionParameters, ScheduledEvalParameters
from champion.provenance import code_digest, git_commit
from components import CPU_IMAGE, GPU_IMAGE
from evaluators.run_inputs import load_run_configs
from pipelines.containers import ContainerLedger, Runner, docker_runner, input_paths, stop_containers, with_images
from pipelines.kfp_local import StepState, StepTracker, task_label
from pipelines.promotion import promotion_pipeline
from pipelines.scheduled_eval import scheduled_eval_pipeline
from registry.monitoring import MONITOR_EXPERIMENT
from registry.registry import _alias_lock, append_audit, audit_events, connect
from registry.run_metrics import export, gate_metrics, monitor_metrics, step_metrics

OFFLINE_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "RAGAS_DO_NOT_TRACK": "true",
    "DO_NOT_TRACK": "true",
    "TOKENIZERS_PARALLELISM": "false",
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TQDM_DISABLE": "1",
}


class PipelineFailed(ChampionError):
    """A step of the local run failed; ``step`` and ``error`` say which and why (from the step's own record)."""

    def __init__(self, problem: str, fix: str = "", *, step: str = "", error: StepError | None = None) -> None:
        super().__init__(problem, fix)
        self.step = step
        self.error = error


@dataclass
class Workspace:
    root: Path

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def weights_cache(self) -> Path:
        return self.root / "cache" / "weights"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def mlflow_uri(self) -> str:
        return f"sqlite:///{self.root / 'mlflow.db'}"

    def create(self) -> "Workspace":
        for folder in (self.runs, self.weights_cache, self.logs, self.root / "cache" / "datasets"):
            folder.mkdir(parents=True, exist_ok=True)
        return self


@dataclass
class LocalSettings:
    """Where a local run keeps its state; the pipeline's own parameters are in champion.parameters."""

    workspace: Path = Path(".champion")
    weights_cache: Path | None = None  # default: CHAMPION_WEIGHTS_CACHE, else <workspace>/cache/weights
    use_cache: bool = True  # KFP's step cache and the per-example cache (off: everything is computed)
    # Where the steps run: subprocesses of this virtual environment, or containers of the champion image
    # (pipelines/containers.py), as on a cluster.
    runner: Runner = "subprocess"
    # Where both caches live (default: CHAMPION_CACHE_DIR, else <workspace>/cache). Workspaces may share
    # one: every entry is keyed by content (pins, digests), never by a workspace's paths.
    cache_dir: Path | None = None

    def caches(self, workspace: "Workspace") -> Path:
        return Path(self.cache_dir or os.environ.get("CHAMPION_CACHE_DIR") or workspace.root / "cache").resolve()


def _step_error(folder: Path) -> StepError | None:
    """The newest error record a failed step left (champion.errors.record_step_errors)."""
    records = sorted(folder.glob("*.json"), key=lambda path: path.stat().st_mtime) if folder.is_dir() else []
    return StepError(**json.loads(records[-1].read_text(encoding="utf-8"))) if records else None


def _local_path(value: str, *, yaml_only: bool = False) -> str:
    """A relative path made absolute (steps run in other folders); names and URLs stay as they are."""
    if "://" in value or value.lstrip().startswith("{"):
        return value
    if yaml_only:
        return str(Path(value).resolve()) if value.endswith((".yaml", ".yml")) else value
    return str(Path(value).resolve()) if Path(value).exists() else value


def pipeline_arguments(params: PipelineParameters, settings: LocalSettings, workspace: Workspace) -> dict:
    """The pipeline's arguments for a run on this machine: the parameters as given, paths made absolute,
    and what only makes sense here (the workspace's sqlite MLflow, its caches; no cluster to deploy to)
    unless the caller set it explicitly."""
    arguments = params.model_dump()
    for name in ("data_source", "model_source", "drift_reference"):
        if name in arguments and arguments[name] not in ("demo",):
            arguments[name] = _local_path(arguments[name])
    for name in ("prompt", "gate_config", "evaluator_config"):
        if name in arguments:
            arguments[name] = _local_path(arguments[name], yaml_only=True)
    local = {
        "weights_cache": str(
            settings.weights_cache or os.environ.get("CHAMPION_WEIGHTS_CACHE") or workspace.weights_cache
        ),
        "mlflow_tracking_uri": workspace.mlflow_uri,
        "cache_root": str(settings.caches(workspace) / "examples") if settings.use_cache else "",
        "deploy_target": "none",  # no cluster here: the manifest is rendered and validated, then the alias moves
    }
    arguments.update(
        {key: value for key, value in local.items() if key in arguments and key not in params.model_fields_set}
    )
    return arguments


def preflight(params: PipelineParameters, settings: LocalSettings) -> None:
    """Fail in a second on inputs that would otherwise fail minutes into the run. Values and bounds were
    checked by the parameter model; here: folders, files, and configs that must fit each other."""

    check_folder(settings.workspace, "workspace", must_exist=False, error=ConfigError)
    if settings.weights_cache is not None:
        check_folder(settings.weights_cache, "weights cache", must_exist=False, error=ConfigError)
    load_run_configs(
        params.prompt if isinstance(params, PromotionParameters) else "", params.evaluator_config, params.gate_config
    )
    data = params.data_source
    if data != "demo" and "://" not in data and not Path(data).exists():
        raise DataError(
            f"evaluation set {data} does not exist.",
            "pass --data with a JSONL, CSV or Parquet file, or leave it out for the demo set.",
        )


@dataclass
class LocalRun:
    """What a local run produced, as data: the pipeline's outputs and each task's state and outputs."""

    outputs: Any
    workspace: Workspace
    log_path: Path
    seconds: float
    steps: StepTracker
    started_ns: int = 0
    name: str = ""
    run_id: str = ""
    containers: ContainerLedger | None = None  # where each task ran, when the steps ran in containers

    def container_per_task(self) -> dict[str, dict[str, Any]] | None:
        """Where each task ran (None: the steps were subprocesses of this environment)."""
        return self.containers.by_task(task_label) if self.containers is not None else None

    def trace(self, **attributes) -> str:
        """The run's root span and its cached steps' spans (the steps that ran recorded their own); the trace id."""
        return tracing.record_run(
            self.name,
            self.steps.spans,
            {"champion.pipeline": self.name, **{f"champion.{k}": v for k, v in attributes.items() if v is not None}},
            run_id=self.run_id,
            started_ns=self.started_ns,
            ended_ns=time.time_ns(),
        )


def _run_locally(
    pipeline_func, params: PipelineParameters, settings: LocalSettings, on_event: Callable[[str, StepState], None]
) -> LocalRun:
    from kfp import local

    preflight(params, settings)
    workspace = Workspace(settings.workspace.resolve()).create()
    os.environ.update(OFFLINE_ENV)
    os.environ["HF_DATASETS_CACHE"] = str(workspace.root / "cache" / "datasets")
    os.environ.setdefault("CHAMPION_GIT_COMMIT", git_commit())
    # Expected here: the steps name the cluster image but run in this virtual environment on purpose.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner", category=UserWarning)
    name = pipeline_func.component_spec.name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    log_path = workspace.logs / f"{name}-{stamp}.log"
    errors = workspace.root / "errors" / f"{name}-{stamp}-{os.getpid()}"
    os.environ[STEP_ERRORS_ENV] = str(errors)
    # The run's id, which every step process inherits: their spans join the run's trace (champion.tracing).
    run_id = os.environ[tracing.RUN_ID_ENV] = str(uuid.uuid4())
    started, started_ns = time.perf_counter(), time.time_ns()
    # Every step inherits the cancellation marker's path: a signal to this command marks the run
    # cancelled (under the alias lock, so no step is midway through moving the alias), stops every
    # step process, and only then ends the command.
    cancel_file = workspace.root / "cancelled" / f"{log_path.stem}.reason"
    os.environ[CANCEL_ENV] = str(cancel_file)
    arguments = pipeline_arguments(params, settings, workspace)
    runner, ledger = _runner(settings, workspace, run_id, arguments)
    if ledger is not None:
        # No GPU here: the GPU steps run in the CPU image, which holds the same code.
        pipeline_func = with_images(pipeline_func, {GPU_IMAGE: CPU_IMAGE})
    # workspace_root stays unset: kfp.local deletes it after every run. The step cache lives in the
    # workspace; its entries point at artifacts under runs/, and a missing artifact is a miss.
    local.init(
        runner=runner,
        pipeline_root=str(workspace.runs),
        raise_on_error=True,
        enable_caching=settings.use_cache,
        cache_root=str(settings.caches(workspace) / "steps" / code_digest()[:16]),
    )
    tracker = StepTracker(on_event)
    audit_path = workspace.root / "audit.jsonl"
    audit_start = audit_path.stat().st_size if audit_path.exists() else 0  # this run's events come after it
    # kfp.local swaps the root logger's handlers per task, from several threads when the scoring loop runs
    # its bundles in parallel; a handler bound to this run's log file can outlive the run. Put them back.
    root_handlers = logging.getLogger().handlers[:]
    with open(log_path, "w", encoding="utf-8") as log_handle, _restored_handlers(root_handlers):
        try:
            with (
                stop_on_signals(lambda signum: mark_cancelled(workspace, cancel_file, signum, run_id)),
                contextlib.redirect_stdout(log_handle),
                tracker.watching(),
                ledger.following() if ledger is not None else contextlib.nullcontext(),
            ):
                outputs = pipeline_func(**arguments)
        except Interrupted as interrupted:
            promoted = _alias_moved_since(audit_path, audit_start)
            append_audit(
                str(audit_path),
                {
                    "event": "run_cancelled",
                    "pipeline": name,
                    "log": str(log_path),
                    "reason": cancel_file.read_text(encoding="utf-8") if cancel_file.exists() else "",
                    "after_alias_moved": bool(promoted),
                },
            )
            if promoted:
                raise Interrupted(interrupted.signum, promoted) from None
            raise
        except Exception as exc:
            LocalRun(None, workspace, log_path, 0.0, tracker, started_ns, name, run_id, ledger).trace(
                model=params.registered_model_name, outcome="failed"
            )
            step, error = tracker.failed_step or "a step", _step_error(errors)
            why = f"{error.type}: {error.problem}" if error else f"{type(exc).__name__}: {exc}"
            fix = (error.fix + " " if error and error.fix else "") + f"(the full log: {log_path})"
            raise PipelineFailed(f"step {step} failed: {why}", fix, step=step, error=error) from exc
    return LocalRun(
        outputs.outputs, workspace, log_path, time.perf_counter() - started, tracker, started_ns, name, run_id, ledger
    )


def _runner(settings: LocalSettings, workspace: Workspace, run_id: str, arguments: dict):
    """kfp.local's runner for this run, and the ledger of its containers (None: steps are subprocesses)."""
    from kfp import local

    if settings.runner == "subprocess":
        return local.SubprocessRunner(use_venv=False), None
    weights = Path(arguments.get("weights_cache") or workspace.weights_cache)
    runner = docker_runner(
        image=CPU_IMAGE,
        run_id=run_id,
        writable=[workspace.root, settings.caches(workspace), weights],
        read_only=input_paths(arguments),
    )
    return runner, ContainerLedger(run_id)


@contextlib.contextmanager
def _restored_handlers(handlers: list):
    try:
        yield
    finally:
        logging.getLogger().handlers[:] = handlers


def _alias_moved_since(audit_path: Path, offset: int) -> str:
    """The alias move this run made before it was stopped, as "model vN, bundle <id>", or ""."""
    moved = [event for event in audit_events(audit_path, since=offset) if event.get("event") == "alias_moved"]
    if not moved:
        return ""
    last = moved[-1]
    return f"{last.get('model')} v{last.get('to_version')}, bundle {str(last.get('bundle_id', ''))[:12]}"


def mark_cancelled(workspace: Workspace, cancel_file: Path, signum: int, run_id: str = "") -> None:
    """Write the cancellation marker, then wait for the alias lock: a step already inside its move
    finishes it; every step that takes the lock later sees the marker and refuses to move the alias.
    Then stop the run's containers, if its steps run in any (they are not this command's processes)."""
    import signal

    cancel_file.parent.mkdir(parents=True, exist_ok=True)
    cancel_file.write_text(
        f"{signal.Signals(signum).name} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}", encoding="utf-8"
    )
    with _alias_lock(workspace.mlflow_uri, timeout_s=30.0):
        pass
    if run_id:
        stop_containers(run_id)


def run_promotion(
    params: PromotionParameters,
    settings: LocalSettings = LocalSettings(),
    on_event: Callable[[str, StepState], None] = lambda task, state: None,
) -> dict:
    """Run the promotion pipeline locally and return its summary (what ``champion run --json`` prints).

    With a sequential policy each look is one run of the pipeline, from ``params.look``: while the gate says
    "continue" the next look's run scores the challenger on more of the set (what it already answered comes
    from the per-example caches, the champion's scores from the step cache); ``looks`` lists them."""

    looks: list[dict] = []
    while True:
        run = _run_locally(promotion_pipeline, params, settings, on_event)
        decision = json.loads(run.outputs["decision"])
        looks.append(
            {
                "look": params.look,
                "gate": decision["gate"],
                "examples": decision["n_examples"],
                "seconds": round(run.seconds, 1),
            }
        )
        # The run's own branch says whether to look again (its look_again step ran), as a cluster run's does.
        if json.loads(run.outputs["deployment"])["status"] != "look_again":
            break
        params = params.model_copy(update={"look": params.look + 1})
    summary = summarise(run, params) | {"cache": run.steps.cache_totals(), "steps": run.steps.timeline()}
    summary["looks"] = looks
    summary["wall_seconds"] = round(sum(look["seconds"] for look in looks), 1)
    summary["runner"] = settings.runner
    if (containers := run.container_per_task()) is not None:
        summary["containers"] = containers
    if summary.get("judge"):
        summary["judge"] = summary["judge"] | {"spent_this_run": run.steps.spent()}
    summary["metrics_file"] = _export_run_metrics(run.workspace, params.registered_model_name, summary)
    summary["trace_id"] = run.trace(
        model=params.registered_model_name,
        bundle_id=summary["bundle_id"],
        champion_bundle_id=(summary.get("champion") or {}).get("bundle_id"),
        decision=summary["decision"],
    )
    return summary


def _export_run_metrics(workspace: Workspace, model: str, summary: dict) -> str:
    """The run's outcome and its steps' seconds and cache hits, for a node_exporter textfile collector."""

    registry = gate_metrics(model, {"gate": summary["gate"], "checks": summary["checks"]})
    step_metrics(model, summary["steps"], registry)
    return export(registry, model=model, kind="promotion", textfile=workspace.root / "metrics" / "promotion.prom")[0]


def run_scheduled_eval(
    params: ScheduledEvalParameters,
    settings: LocalSettings = LocalSettings(),
    on_event: Callable[[str, StepState], None] = lambda task, state: None,
) -> dict:
    """Run the scheduled evaluation locally. An alert (the champion regressed) is a result, not an error."""

    failure, run = None, None
    try:
        run = _run_locally(scheduled_eval_pipeline, params, settings, on_event)
        run.trace(model=params.registered_model_name, outcome="evaluated")
        workspace = run.workspace
    except PipelineFailed as exc:
        alert = exc.step.startswith("monitor-op") and exc.error is not None and exc.error.type == "ChampionRegressed"
        if not alert:  # an alert is a result; any other failure is an error
            raise
        failure, workspace = exc, Workspace(settings.workspace.resolve())
    _, client, experiment_id = connect(workspace.mlflow_uri, experiment=MONITOR_EXPERIMENT)
    latest = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    checks = json.loads(
        Path(
            client.download_artifacts(latest.info.run_id, "monitor/checks.json", str(workspace.root / "cache"))
        ).read_text()
    )

    metrics_file = export(
        monitor_metrics(
            params.registered_model_name,
            healthy=latest.data.tags["champion.monitor_status"] == "healthy",
            checks=checks["checks"],
            scores=dict(latest.data.metrics),
        ),
        model=params.registered_model_name,
        kind="scheduled-evaluation",
        textfile=workspace.root / "metrics" / "scheduled-evaluation.prom",
    )[0]
    return {
        "metrics_file": metrics_file,
        "status": latest.data.tags["champion.monitor_status"],
        "champion_version": latest.data.tags["champion.version"],
        "evaluated_bundle_id": latest.data.tags["champion.evaluated_bundle_id"],
        "failed_checks": [c["reason"] for c in checks["checks"] if not c["passed"]],
        "checks": checks["checks"],
        "mode": checks.get("mode", "bootstrap"),
        "compared_with": checks["previous_run"],  # the MLflow run compared against, if any
        "baseline": checks.get("compared_with", ""),  # what the checks compared against, in words
        "mlflow_run": latest.info.run_id,
        "error": failure.problem if failure else None,
        "runner": settings.runner,
        **({"containers": containers} if run and (containers := run.container_per_task()) is not None else {}),
    }


def collect_reports(run_dir: Path, reports: dict[str, str | None], target: Path) -> dict[str, str | None]:
    """Copy the run's reports under names a browser and editor understand (KFP saves them without extensions)."""
    names = {
        "gate_report": "gate_report.html",
        "gate_summary": "gate_summary.md",
        "decision": "decision.json",
        "scores": "scores.jsonl",
        "judge_report": "judge_report.md",
        "drift_report": "drift_report.html",
        "deploy_report": "deploy_report.md",
        "manifest": "inferenceservice.yaml",
    }
    target.mkdir(parents=True, exist_ok=True)
    collected: dict[str, str | None] = {}
    for key, path in reports.items():
        if path and key in names and Path(path).is_file():
            shutil.copyfile(path, target / names[key])
            collected[key] = str(target / names[key])
        else:
            collected[key] = path
    return collected


def summarise(run: LocalRun, params: PromotionParameters) -> dict:
    outputs, workspace, log_path, seconds = run.outputs, run.workspace, run.log_path, run.seconds
    decision = json.loads(outputs["decision"])
    deployment = json.loads(outputs["deployment"])
    # The folder of this run: the deploy (or skip) step always runs, so its report is this run's. Outputs
    # the step cache answered stay where the run that computed them wrote them.
    run_dir = Path(deployment["report"]).parent.parent
    metrics = {k: v for k, v in outputs["eval_metrics"].metadata.items() if k != "display_name"}
    metrics.update({k: v for k, v in outputs["drift_metrics"].metadata.items() if k != "display_name"})
    intervals = {
        c["metric"] + (f"[{c['slice']}]" if c.get("slice") else ""): {
            key: c[key]
            for key in (
                "test",
                "status",
                "passed",
                "difference",
                "ci_low",
                "ci_high",
                "confidence",
                "threshold",
                "scale",
                "level",
                "method",
            )
        }
        | {"challenger": c["value"], "champion": c["champion"]}
        for c in decision["checks"]
        if c["test"] in ("non-inferiority", "superiority")
    }
    promoted = bool(outputs["promoted"])
    return {
        "bundle_id": decision["bundle_id"],
        "gate": decision["gate"],
        # One word for what happened: promoted (the alias moved), approved (the gate passed, nothing moved), rejected.
        "decision": "promoted" if promoted else decision["decision"],
        "reasons": decision["reasons"],
        "judge": decision.get("judge"),
        "mode": decision["mode"],
        "look": decision.get("look"),  # a sequential decision: the look it was taken at (None: fixed-n)
        "decided_at": decision.get("decided_at", ""),
        "champion": decision["champion"],
        "metrics": metrics,
        "intervals": intervals,
        "checks": decision["checks"],
        "bundle": decision["bundle"],
        "model_version": outputs["model_version"],
        "registered_model": params.registered_model_name,
        "mlflow_tracking_uri": workspace.mlflow_uri,
        "reports": collect_reports(
            run_dir,
            {
                "gate_report": decision["reports"]["html"],
                "gate_summary": decision["reports"]["markdown"],
                "decision": decision["reports"]["decision"],
                "scores": outputs["scores"].path,
                "judge_report": outputs["judge_report"].path,
                "drift_report": outputs["drift_report"].path,
                "deploy_report": deployment["report"],
                "manifest": deployment["manifest"],
                "audit_log": str(workspace.root / "audit.jsonl"),
                "log": str(log_path),
            },
            workspace.root / "reports" / run_dir.name,
        ),
        "deployment": deployment["status"],
        "deployment_reason": deployment["reason"],
        "promoted": promoted,
        "run_dir": str(run_dir),
        "wall_seconds": round(seconds, 1),
    }
