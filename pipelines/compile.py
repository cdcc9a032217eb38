"""Compile every pipeline and component to KFP IR YAML and check each file loads back.

Images are fixed at import time of ``components`` (images/refs.env, overridden by CHAMPION_CPU_IMAGE /
CHAMPION_GPU_IMAGE and their *_DIGEST variables; see components/__init__.py), so
``compile_all`` runs the compiler in a fresh interpreter, which keeps the output a pure function of
the source, its commit and the images: byte-identical from run to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import components as steps
from champion.errors import STEP_ERRORS_ENV, ChampionError
from champion.provenance import git_commit

PIPELINES = {
    "promotion": "pipelines.promotion:promotion_pipeline",
    "scheduled_eval": "pipelines.scheduled_eval:scheduled_eval_pipeline",
}


class CompileError(ChampionError):
    """A pipeline or component did not compile or did not load back."""


def _resolve(target: str):
    import importlib

    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _compile_here(output: Path) -> list[Path]:
    from kfp import compiler, components

    unset = [kind for kind, image in (("CPU", steps.CPU_IMAGE), ("GPU", steps.GPU_IMAGE)) if image == steps.UNSET]
    if unset:
        raise CompileError(
            f"no image is configured for the {' and '.join(unset)} steps.",
            "set CHAMPION_CPU_IMAGE / CHAMPION_GPU_IMAGE in images/refs.env (or the environment).",
        )

    written = []
    pipelines = {name: _resolve(target) for name, target in PIPELINES.items()}
    step_ops = {name: registered.op for name, registered in steps.registry().items()}
    for kind, table in (("pipelines", pipelines), ("components", step_ops)):
        folder = output / kind
        folder.mkdir(parents=True, exist_ok=True)
        for name, function in table.items():
            path = folder / f"{name}.yaml"
            compiler.Compiler().compile(function, str(path))
            try:
                components.load_component_from_file(str(path))
            except Exception as exc:
                raise CompileError(
                    f"{path} does not load back with kfp: {exc}", "report this as a bug in champion."
                ) from exc
            written.append(path)
    return written


def compile_all(
    output: Path,
    *,
    cpu_image: str | None = None,
    gpu_image: str | None = None,
    weights_pvc: str | None = None,
    kueue_queue: str | None = None,
    otlp_endpoint: str | None = None,
) -> list[Path]:
    """Compile in a fresh interpreter: images, the weights PVC and the source commit are fixed when the
    pipeline modules are imported, and each step records the commit it was compiled from
    (CHAMPION_GIT_COMMIT in its environment), so a cluster run's registry and audit entries name it."""
    import json
    import tempfile

    output = Path(output)
    if otlp_endpoint and not otlp_endpoint.startswith(("http://", "https://")):
        raise CompileError(
            f"the OTLP endpoint {otlp_endpoint!r} is not an http(s) URL: the steps export spans over OTLP/HTTP.",
            "give the collector's OTLP/HTTP base URL, e.g. http://otel-collector.observability:4318.",
        )
    settings = {
        "CHAMPION_CPU_IMAGE": cpu_image,
        "CHAMPION_GPU_IMAGE": gpu_image,
        "CHAMPION_WEIGHTS_PVC": weights_pvc,
        "CHAMPION_KUEUE_QUEUE": kueue_queue,
        "CHAMPION_OTLP_ENDPOINT": otlp_endpoint,
    }
    with tempfile.TemporaryDirectory(prefix="champion-compile-") as errors:
        env = {
            **os.environ,
            **{k: v for k, v in settings.items() if v},
            "CHAMPION_BUILD_COMMIT": git_commit(),
            STEP_ERRORS_ENV: errors,
        }
        code = f"from pathlib import Path; from pipelines.compile import _compile_here; [print(p) for p in _compile_here(Path({str(output)!r}))]"
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if result.returncode != 0:  # the compiler's own error, as the child recorded it (champion.errors.StepError)
            records = sorted(Path(errors).glob("*.json"))
            error = (
                json.loads(records[-1].read_text())
                if records
                else {"type": "error", "problem": f"the compiler exited with status {result.returncode}", "fix": ""}
            )
            raise CompileError(
                error["problem"], error["fix"] or "run `champion compile` again to see the compiler's full output."
            )
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]
