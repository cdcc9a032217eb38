"""Run the promotion pipeline on this machine through kfp.local: the embedded default.

Every step runs as a subprocess of the current virtual environment (``SubprocessRunner(use_venv=False)``),
with no network: models and data come from installed packages or local paths, MLflow is a sqlite
file in the workspace. The same pipeline function compiles for a Kubeflow cluster.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from champion.errors import ChampionError
from champion.interrupt import CANCEL_ENV, Interrupted, stop_on_signals

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
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STARTED = re.compile(r"Executing task '?([\w-]+)'?")
_FINISHED = re.compile(r"Task '?([\w-]+)'? finished with status (\w+)")
_SKIPPED = re.compile(r"Skipping (?:conditional )?task '?([\w-]+)'?")
# The last line of a step's traceback: any error class from champion's packages, or any *Error.
_CHAMPION_ERROR = re.compile(r"^(?:(?:champion|components|serving|evaluators|pipelines|prompts)(?:\.\w+)*\.(\w+)|(?:[\w.]+\.)?(\w+Error)): (.+)")


class PipelineFailed(ChampionError):
    """A step of the local run failed; the message carries the step and its error."""


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
class RunOptions:
    data: str = "demo"
    prompt: str = "qa-concise"
    model: str = "smollm2"
    gate_config: str = "default"
    evaluator_config: str = "default"
    workspace: Path = Path(".champion")
    limit: int = 0
    backend: str = "transformers"
    batch_size: int = 16
    registered_model_name: str = "champion-qa"
    weights_cache: Path | None = None  # default: CHAMPION_WEIGHTS_CACHE, else <workspace>/cache/weights
    extra: dict = field(default_factory=dict)


class _TaskLog(io.TextIOBase):
    """Stands in for sys.stdout during a run: keeps the full log in a file and reports task events."""

    def __init__(self, handle, on_event: Callable[[str, str], None]) -> None:
        self._handle = handle
        self._on_event = on_event
        self._pending = ""
        self.lines: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._handle.write(text)
        self._handle.flush()
        self._pending += text
        *complete, self._pending = self._pending.split("\n")
        for line in complete:
            clean = _ANSI.sub("", line)
            self.lines.append(clean)
            if match := _FINISHED.search(clean):
                self._on_event(match.group(1), match.group(2).lower())
            elif match := _STARTED.search(clean):
                self._on_event(match.group(1), "running")
            elif match := _SKIPPED.search(clean):
                self._on_event(match.group(1), "skipped")
        return len(text)


def _git_commit() -> str:
    """The commit of the checkout champion runs from (not of the current directory: a user may run
    champion from anywhere); "unknown" for an installed package outside any checkout."""
    source = Path(__file__).resolve().parent.parent
    try:
        return subprocess.run(["git", "-C", str(source), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _failure_message(lines: list[str], error: Exception) -> str:
    message = _ANSI.sub("", str(error))
    failed_step = re.search(r"Inner task failed: '([\w-]+)'", message) or re.search(r"Task '?([\w-]+)'? finished with status FAILURE", "\n".join(lines))
    step = failed_step.group(1) if failed_step else "a step"
    for line in reversed(lines):
        match = _CHAMPION_ERROR.search(line.strip())
        if match:
            return f"step {step} failed: {match.group(1) or match.group(2)}: {match.group(3)}"
    return f"step {step} failed: {message}"


def pipeline_arguments(options: RunOptions, workspace: Workspace) -> dict:
    return {
        "data_source": str(Path(options.data).resolve()) if options.data != "demo" and "://" not in options.data else options.data,
        "limit": options.limit,
        "model_source": str(Path(options.model).resolve()) if Path(options.model).exists() else options.model,
        "weights_cache": str(options.weights_cache or os.environ.get("CHAMPION_WEIGHTS_CACHE") or workspace.weights_cache),
        "prompt": str(Path(options.prompt).resolve()) if options.prompt.endswith((".yaml", ".yml")) else options.prompt,
        "generation_backend": options.backend,
        "batch_size": options.batch_size,
        "gate_config": str(Path(options.gate_config).resolve()) if options.gate_config.endswith((".yaml", ".yml")) else options.gate_config,
        "evaluator_config": str(Path(options.evaluator_config).resolve()) if options.evaluator_config.endswith((".yaml", ".yml")) else options.evaluator_config,
        "mlflow_tracking_uri": workspace.mlflow_uri,
        "registered_model_name": options.registered_model_name,
        "deploy_target": "none",  # no cluster here: the manifest is rendered and validated, then the alias moves
        "cache_root": str(workspace.root / "cache" / "examples"),
        **options.extra,
    }


REGISTERED_MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def preflight(options: RunOptions) -> None:
    """Fail in a second on inputs that would otherwise fail minutes into the run."""
    from champion.errors import ConfigError, DataError
    from champion.inputs import check_folder, finite_number
    from evaluators.config import load_evaluator_config
    from evaluators.policy import check_against, load_policy
    from prompts import load_prompt
    from serving.generation import BACKENDS

    check_folder(options.workspace, "workspace", must_exist=False, error=ConfigError)
    if options.weights_cache is not None:
        check_folder(options.weights_cache, "weights cache", must_exist=False, error=ConfigError)
    finite_number("--limit", options.limit, low=0, integer=True, error=ConfigError)
    finite_number("--batch-size", options.batch_size, low=1, high=4096, integer=True, error=ConfigError)
    numbers = {"eval_fraction": dict(low=0.0, high=1.0), "fine_tune_steps": dict(low=0, high=1_000_000, integer=True), "fine_tune_learning_rate": dict(low=0.0, high=1.0),
               "lora_rank": dict(low=1, high=1024, integer=True), "canary_traffic_percent": dict(low=0, high=100, integer=True), "smoke_examples": dict(low=0, high=10_000, integer=True),
               "smoke_min_token_f1": dict(low=0.0, high=1.0), "ready_timeout_s": dict(low=1.0, high=86_400.0), "seed": dict(integer=True)}
    for key, bounds in numbers.items():
        if key in options.extra:
            finite_number(f"--{key.replace('_', '-')}", options.extra[key], error=ConfigError, **bounds)
    if options.extra.get("context_overflow", "fail") not in ("fail", "skip"):
        raise ConfigError(f"--context-overflow must be 'fail' or 'skip', got {options.extra['context_overflow']!r}.", "pass --context-overflow fail (stop and name the examples) or skip (leave them out and count them).")
    if options.extra.get("eval_fraction", 1.0) <= 0.0:
        raise ConfigError(f"--eval-fraction must be above 0, got {options.extra['eval_fraction']}.", "pass a share in (0, 1], e.g. 0.5.")
    if not REGISTERED_MODEL_NAME.match(options.registered_model_name):
        raise ConfigError(f"registered model name {options.registered_model_name!r} is not a plain name (letters, digits, '.', '_', '-').", "pick a name like champion-qa; quotes and spaces would break MLflow's search filters.")
    load_prompt(options.prompt)  # refuses answer-key variables and impostors of published prompts
    check_against(load_policy(options.gate_config), load_evaluator_config(options.evaluator_config).metric_catalog(), options.gate_config)
    if options.backend not in BACKENDS:
        from serving.generation import get_generator

        get_generator(options.backend, "")  # raises the typed error with a suggestion
    if options.data != "demo" and "://" not in options.data and not Path(options.data).exists():
        raise DataError(f"evaluation set {options.data} does not exist.", "pass --data with a JSONL, CSV or Parquet file, or leave it out for the demo set.")


def _run_locally(pipeline_func, options: RunOptions, on_event: Callable[[str, str], None], extra_arguments: dict | None = None):
    """Run ``pipeline_func`` through kfp.local in the workspace; returns (run, workspace, log path, seconds, log lines)."""
    from kfp import local

    preflight(options)
    workspace = Workspace(options.workspace.resolve()).create()
    os.environ.update(OFFLINE_ENV)
    os.environ["HF_DATASETS_CACHE"] = str(workspace.root / "cache" / "datasets")
    os.environ.setdefault("CHAMPION_GIT_COMMIT", _git_commit())
    # Expected here: the steps name the cluster image but run in this virtual environment on purpose.
    warnings.filterwarnings("ignore", message="You may be attemping to run a task", category=RuntimeWarning)
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner", category=UserWarning)
    # workspace_root stays unset: kfp.local deletes it after every run.
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(workspace.runs), raise_on_error=True)
    name = pipeline_func.component_spec.name
    log_path = workspace.logs / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    accepted = pipeline_func.component_spec.inputs or {}
    arguments = {key: value for key, value in {**pipeline_arguments(options, workspace), **(extra_arguments or {})}.items() if key in accepted}
    started = time.perf_counter()
    # Every step inherits the cancellation marker's path: a signal to this command marks the run
    # cancelled (under the alias lock, so no step is midway through moving the alias), stops every
    # step process, and only then ends the command.
    cancel_file = workspace.root / "cancelled" / f"{log_path.stem}.reason"
    os.environ[CANCEL_ENV] = str(cancel_file)
    with open(log_path, "w", encoding="utf-8") as log_handle:
        task_log = _TaskLog(log_handle, on_event)
        try:
            with stop_on_signals(lambda signum: mark_cancelled(workspace, cancel_file, signum)), contextlib.redirect_stdout(task_log):
                run = pipeline_func(**arguments)
        except Interrupted:
            from serving.registry import append_audit

            append_audit(str(workspace.root / "audit.jsonl"), {"event": "run_cancelled", "pipeline": name, "log": str(log_path), "reason": cancel_file.read_text(encoding="utf-8") if cancel_file.exists() else ""})
            raise
        except Exception as exc:
            raise PipelineFailed(_failure_message(task_log.lines, exc), f"see the full log: {log_path}") from exc
    return run, workspace, log_path, time.perf_counter() - started, task_log.lines


def mark_cancelled(workspace: Workspace, cancel_file: Path, signum: int) -> None:
    """Write the cancellation marker, then wait for the alias lock: a step already inside its move
    finishes it; every step that takes the lock later sees the marker and refuses to move the alias."""
    import signal

    from serving.registry import _alias_lock

    cancel_file.parent.mkdir(parents=True, exist_ok=True)
    cancel_file.write_text(f"{signal.Signals(signum).name} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}", encoding="utf-8")
    with _alias_lock(workspace.mlflow_uri, timeout_s=30.0):
        pass


def run_promotion(options: RunOptions, on_event: Callable[[str, str], None] = lambda task, state: None) -> dict:
    """Run the promotion pipeline locally and return its summary (what ``champion run --json`` prints)."""
    from pipelines.promotion import promotion_pipeline

    run, workspace, log_path, seconds, lines = _run_locally(promotion_pipeline, options, on_event)
    return summarise(run.outputs, workspace, log_path, seconds, options) | {"cache": cache_stats(lines)}


_CACHE_LINE = re.compile(r"(\w+) (\d+) hits, (\d+) misses, (\d+) corrupt")


def cache_stats(lines: list[str]) -> dict[str, dict[str, int]]:
    """Per-example cache hits and misses, summed over the run's steps (each step prints its own)."""
    totals: dict[str, dict[str, int]] = {}
    for line in lines:
        if ": cache " not in line:
            continue
        for kind, hits, misses, corrupt in _CACHE_LINE.findall(line.split(": cache ", 1)[1]):
            entry = totals.setdefault(kind, {"hits": 0, "misses": 0, "corrupt": 0})
            entry["hits"] += int(hits)
            entry["misses"] += int(misses)
            entry["corrupt"] += int(corrupt)
    return totals


def run_scheduled_eval(options: RunOptions, *, webhook_url: str = "", on_event: Callable[[str, str], None] = lambda task, state: None) -> dict:
    """Run the scheduled evaluation locally. An alert (the champion regressed) is a result, not an error."""
    from components.monitor import MONITOR_EXPERIMENT
    from pipelines.scheduled_eval import scheduled_eval_pipeline
    from serving.registry import connect

    failure = None
    try:
        _, workspace, log_path, seconds, _ = _run_locally(scheduled_eval_pipeline, options, on_event, {"webhook_url": webhook_url})
    except PipelineFailed as exc:
        if "monitor-op" not in exc.problem or "ChampionRegressed" not in exc.problem:  # an alert is a result; any other failure is an error
            raise
        failure, workspace = exc, Workspace(options.workspace.resolve())
    _, client, experiment_id = connect(workspace.mlflow_uri, experiment=MONITOR_EXPERIMENT)
    latest = client.search_runs([experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    checks = json.loads(Path(client.download_artifacts(latest.info.run_id, "monitor/checks.json", str(workspace.root / "cache"))).read_text())
    return {
        "status": latest.data.tags["champion.monitor_status"],
        "champion_version": latest.data.tags["champion.version"],
        "evaluated_bundle_id": latest.data.tags["champion.evaluated_bundle_id"],
        "failed_checks": [c["reason"] for c in checks["checks"] if not c["passed"]],
        "checks": checks["checks"],
        "mode": checks.get("mode", "bootstrap"),
        "compared_with": checks["previous_run"],
        "mlflow_run": latest.info.run_id,
        "error": failure.problem if failure else None,
    }


def collect_reports(run_dir: Path, reports: dict[str, str | None], target: Path) -> dict[str, str | None]:
    """Copy the run's reports under names a browser and editor understand (KFP saves them without extensions)."""
    names = {"gate_report": "gate_report.html", "gate_summary": "gate_summary.md", "decision": "decision.json", "scores": "scores.jsonl",
             "judge_report": "judge_report.md", "drift_report": "drift_report.html", "deploy_report": "deploy_report.md", "manifest": "inferenceservice.yaml"}
    target.mkdir(parents=True, exist_ok=True)
    collected = {}
    for key, path in reports.items():
        if path and key in names and Path(path).is_file():
            shutil.copyfile(path, target / names[key])
            collected[key] = str(target / names[key])
        else:
            collected[key] = path
    return collected


def summarise(outputs, workspace: Workspace, log_path: Path, seconds: float, options: RunOptions) -> dict:
    decision = json.loads(outputs["decision"])
    deployment = json.loads(outputs["deployment"])
    run_dir = Path(outputs["scores"].path).parent.parent
    metrics = {k: v for k, v in outputs["eval_metrics"].metadata.items() if k != "display_name"}
    metrics.update({k: v for k, v in outputs["drift_metrics"].metadata.items() if k != "display_name"})
    intervals = {
        c["metric"] + (f"[{c['slice']}]" if c.get("slice") else ""): {key: c[key] for key in ("test", "status", "passed", "difference", "ci_low", "ci_high", "confidence", "threshold", "scale", "level", "method")}
        | {"challenger": c["value"], "champion": c["champion"]}
        for c in decision["checks"]
        if c["test"] in ("non-inferiority", "superiority")
    }
    promoted = bool(outputs["promoted"])
    return {
        "bundle_id": decision["bundle_id"],
        "gate": decision["gate"],
        # One word for what happened: promoted (the alias moved), approved (the gate passed, nothing moved), rejected.
        "decision": "promoted" if promoted else ("approved" if decision["gate"] == "passed" else "rejected"),
        "reasons": decision["reasons"],
        "mode": decision["mode"],
        "champion": decision["champion"],
        "metrics": metrics,
        "intervals": intervals,
        "checks": decision["checks"],
        "bundle": decision["bundle"],
        "model_version": outputs["model_version"],
        "registered_model": options.registered_model_name,
        "mlflow_tracking_uri": workspace.mlflow_uri,
        "reports": collect_reports(run_dir, {
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
        }, workspace.root / "reports" / run_dir.name),
        "deployment": deployment["status"],
        "deployment_reason": deployment["reason"],
        "promoted": promoted,
        "run_dir": str(run_dir),
        "wall_seconds": round(seconds, 1),
    }
