"""The one adapter between champion and kfp.local's private parts: the orchestrator's task executor,
the only seam where kfp.local reports a task's status as data (which task runs, whether it succeeded,
whether the step cache answered it). Nothing else in champion imports below kfp.local's public API
(tests/test_layers.py checks it).

kfp.local's internals may change in any kfp release, so the adapter says which release it was written
against and refuses, with what to do, when another one is installed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Literal

import kfp
from kfp.local import status
from kfp.local.orchestrator import task_executor

from champion.errors import ConfigError

KFP_SERIES = "2.17"  # the kfp release series this adapter wraps (pyproject pins kfp>=2.17,<2.18)


def check_kfp_version(installed: str = kfp.__version__) -> None:
    if installed != KFP_SERIES and not installed.startswith(KFP_SERIES + "."):
        raise ConfigError(
            f"champion's local runner wraps kfp.local {KFP_SERIES}.x, but kfp {installed} is installed.",
            f"install kfp=={KFP_SERIES}.* (pip install -c constraints.txt -e .); to move to kfp {installed}, check "
            "pipelines/kfp_local.py against its kfp.local.orchestrator.task_executor, run "
            "tests/test_local_runner.py, then raise KFP_SERIES and the pin together.",
        )


StepState = Literal["running", "succeeded", "cached", "failed"]


def task_label(task: str, resource: str) -> str:
    """A task's name in the run: inside the scoring loop, with the bundle's index (``batch-generate-op[0]``
    is the challenger's, ``[1]`` the champion's), read from the loop iteration kfp.local runs it in."""
    iteration = resource.rsplit("-iteration-", 1)
    return f"{task}[{iteration[1]}]" if len(iteration) == 2 and iteration[1].isdigit() else task


@dataclass
class StepTracker:
    """Follows a kfp.local run task by task, from the orchestrator's own calls and return values: which
    task runs, whether it succeeded, and whether KFP's step cache answered it (the task never reached a
    process). This wraps kfp.local's task executor, the one seam where the orchestrator reports a task's
    status as data; tests/test_local_runner.py pins its signature."""

    on_event: Callable[[str, StepState], None]
    states: dict[str, StepState] = field(default_factory=dict)
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    spans: dict[str, dict] = field(default_factory=dict)  # task -> start_ns, end_ns, state (the run's trace)
    _current: threading.local = field(default_factory=threading.local)

    @contextlib.contextmanager
    def watching(self):
        check_kfp_version()

        run_task, execute = (
            task_executor.execute_single_task,
            task_executor.task_dispatcher.run_single_task_implementation,
        )

        def tracked_task(*args, **kwargs):
            name = task_label(kwargs.get("task_name") or args[0], kwargs.get("pipeline_resource_name", ""))
            self._current.executed = False
            self._event(name, "running")
            started, started_ns = time.perf_counter(), time.time_ns()
            try:
                outputs, task_status = run_task(*args, **kwargs)
            except Exception:  # kfp.local raises (rather than returns a failure) when it cannot even start the task
                self._event(name, "failed")
                self.spans[name] = {"start_ns": started_ns, "end_ns": time.time_ns(), "state": "failed"}
                raise
            self.seconds[name] = round(time.perf_counter() - started, 2)
            self.outputs[name] = dict(outputs or {})
            failed = task_status == status.Status.FAILURE
            self._event(name, "failed" if failed else "succeeded" if self._current.executed else "cached")
            self.spans[name] = {"start_ns": started_ns, "end_ns": time.time_ns(), "state": self.states[name]}
            return outputs, task_status

        def tracked_execution(*args, **kwargs):
            self._current.executed = True
            return execute(*args, **kwargs)

        task_executor.execute_single_task = tracked_task
        task_executor.task_dispatcher.run_single_task_implementation = tracked_execution
        try:
            yield self
        finally:
            task_executor.execute_single_task = run_task
            task_executor.task_dispatcher.run_single_task_implementation = execute

    def _event(self, task: str, state: StepState) -> None:
        self.states[task] = state
        self.on_event(task, state)

    def timeline(self) -> dict[str, dict[str, Any]]:
        """Each task's final state and wall seconds, in the order they ran."""
        return {task: {"state": state, "seconds": self.seconds.get(task)} for task, state in self.states.items()}

    @property
    def failed_step(self) -> str:
        return next((task for task, state in self.states.items() if state == "failed"), "")

    def cache_totals(self) -> dict[str, Any]:
        """The per-example cache's hits and misses summed over every step's artifact metadata, and which
        steps KFP's step cache answered."""
        totals: dict[str, dict[str, int]] = {}
        for task, outputs in self.outputs.items():
            if self.states.get(task) != "succeeded":  # a reused step's counts are those of the run that computed it
                continue
            for value in outputs.values():
                for kind, counts in (getattr(value, "metadata", None) or {}).get("cache", {}).items():
                    entry = totals.setdefault(kind, {"hits": 0, "misses": 0, "corrupt": 0})
                    for what in entry:
                        entry[what] += int(counts.get(what, 0))
        return {"examples": totals, "steps": sorted(task for task, state in self.states.items() if state == "cached")}

    def spent(self, prefix: str = "judge_spent_") -> dict[str, int]:
        """What the steps that ran in this run report having spent (their Metrics named ``prefix…``); a step
        the step cache answered spent nothing in this run, whatever its reused Metrics say."""
        totals: dict[str, int] = {}
        for task, outputs in self.outputs.items():
            if self.states.get(task) != "succeeded":
                continue
            # Each step reports its own spend in its output named "metrics"; copies under other names (the
            # gate hands the challenger's metrics on as challenger_metrics) are not spent again.
            if "metrics" in outputs:
                for name, amount in (getattr(outputs["metrics"], "metadata", None) or {}).items():
                    if name.startswith(prefix) and isinstance(amount, (int, float)):
                        key = name.removeprefix(prefix)
                        totals[key] = totals.get(key, 0) + int(amount)
        return totals
