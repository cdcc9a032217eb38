"""Typed errors. Every message names the problem and the fix.

A rejected challenger is not an error: it is a gate Decision. These exceptions are for inputs and
faults that stop a run; they never lead to a promotion.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file or setting, found by a check that reports them all (lint, policy check)."""

    where: str  # a path, or a field such as metrics.token_f1
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.where}: {self.problem} Fix: {self.fix}"


class ChampionError(Exception):
    """Root of every error champion raises on purpose.

    ``problem`` says what is wrong, ``fix`` what the user can do about it.
    """

    def __init__(self, problem: str, fix: str = "") -> None:
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem} Fix: {fix}" if fix else problem)


class DataError(ChampionError):
    """The evaluation set cannot be used (missing columns, empty, wrong types)."""


class PromptError(ChampionError):
    """A prompt template is missing, malformed, or fails to render."""


class ModelSourceError(ChampionError):
    """A model source cannot be resolved to safetensors weights."""


class BackendError(ChampionError):
    """A generation backend is missing or failed."""


class ConfigError(ChampionError):
    """A gate or evaluator configuration is invalid."""


class EvaluationError(ChampionError):
    """Scoring failed or produced unusable values."""


class RegistryError(ChampionError):
    """The model/prompt registry (MLflow) cannot record or promote a bundle."""


class ManifestError(ChampionError):
    """A rendered Kubernetes manifest does not satisfy the CRD schema."""


class DeployError(ChampionError):
    """The Kubernetes API refused or failed a deployment step, or the served bundle failed its checks."""


class GateRejected(DeployError):
    """The gate rejected the bundle and the run was asked to fail on rejection (a CI check)."""


class ServingError(ChampionError):
    """A served endpoint received a request it cannot answer (bad body, unknown model, upstream failure)."""

    def __init__(self, problem: str, fix: str = "", status: int = 400) -> None:
        super().__init__(problem, fix)
        self.status = status


STEP_ERRORS_ENV = "CHAMPION_STEP_ERRORS"


@dataclass(frozen=True)
class StepError:
    """Why a step failed, as data: what the step process wrote when an exception ended it."""

    type: str
    problem: str
    fix: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> "StepError":
        if isinstance(exc, ChampionError):
            return cls(type(exc).__name__, exc.problem, exc.fix)
        return cls(type(exc).__name__, str(exc), "")


def record_step_errors(folder: str) -> None:
    """Make an uncaught exception of this (step) process leave a StepError record in ``folder``, so the
    runner reports it from data rather than from the traceback's text. The hook then prints the
    traceback as usual."""
    import json
    import os
    import sys
    from dataclasses import asdict

    previous = sys.excepthook

    def hook(kind, exc, traceback):
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{os.getpid()}.json"), "w", encoding="utf-8") as handle:
                json.dump(asdict(StepError.from_exception(exc)), handle)
        finally:
            previous(kind, exc, traceback)

    sys.excepthook = hook


def field_problems(exc, *, whole: str = "file", with_input: bool = False, prefix: str = "") -> str:
    """A pydantic ValidationError as one line naming each field (``whole`` when the error is about the
    entire value), optionally with the value given."""
    parts = []
    for error in exc.errors():
        where = ".".join(map(str, error["loc"])) or whole
        given = f" (got {error.get('input')!r})" if with_input else ""
        parts.append(f"{prefix}{where}: {error['msg'].removeprefix('Value error, ')}{given}")
    return "; ".join(parts)
