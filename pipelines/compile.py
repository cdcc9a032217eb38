"""Compile every pipeline and component to KFP IR YAML and check each file loads back.

Images are fixed at import time of ``components`` (images/refs.env, overridden by CHAMPION_CPU_IMAGE /
CHAMPION_GPU_IMAGE and their *_DIGEST variables; see components/__init__.py), so
``compile_all`` runs the compiler in a fresh interpreter when images are given, which keeps the
output a pure function of the source and the images: byte-identical from run to run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from champion.errors import ChampionError

PIPELINES = {"promotion": "pipelines.promotion:promotion_pipeline", "scheduled_eval": "pipelines.scheduled_eval:scheduled_eval_pipeline"}
COMPONENTS = {
    "preprocess_data": "components.preprocess_data:preprocess_data_op",
    "fetch_weights": "components.fetch_weights:fetch_weights_op",
    "fine_tune": "components.fine_tune:fine_tune_op",
    "resolve_champion": "components.resolve_champion:resolve_champion_op",
    "batch_generate": "components.batch_generate:batch_generate_op",
    "evaluate": "components.evaluate:evaluate_op",
    "drift": "components.drift:drift_op",
    "gate": "components.gate:gate_op",
    "register": "components.register:register_op",
    "deploy": "components.deploy:deploy_op",
    "skip_deploy": "components.deploy:skip_deploy_op",
    "monitor": "components.monitor:monitor_op",
    "no_champion": "components.monitor:no_champion_op",
}


class CompileError(ChampionError):
    """A pipeline or component did not compile or did not load back."""


def _resolve(target: str):
    import importlib

    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


def _compile_here(output: Path) -> list[Path]:
    from kfp import compiler, components

    import components as steps

    unset = [kind for kind, image in (("CPU", steps.CPU_IMAGE), ("GPU", steps.GPU_IMAGE)) if image == steps.UNSET]
    if unset:
        raise CompileError(f"no image is configured for the {' and '.join(unset)} steps.", "set CHAMPION_CPU_IMAGE / CHAMPION_GPU_IMAGE in images/refs.env (or the environment).")

    written = []
    for kind, table in (("pipelines", PIPELINES), ("components", COMPONENTS)):
        folder = output / kind
        folder.mkdir(parents=True, exist_ok=True)
        for name, target in table.items():
            path = folder / f"{name}.yaml"
            compiler.Compiler().compile(_resolve(target), str(path))
            try:
                components.load_component_from_file(str(path))
            except Exception as exc:
                raise CompileError(f"{path} does not load back with kfp: {exc}", "report this as a bug in champion.") from exc
            written.append(path)
    return written


def compile_all(output: Path, *, cpu_image: str | None = None, gpu_image: str | None = None, weights_pvc: str | None = None) -> list[Path]:
    output = Path(output)
    env_images = {"CHAMPION_CPU_IMAGE": cpu_image, "CHAMPION_GPU_IMAGE": gpu_image, "CHAMPION_WEIGHTS_PVC": weights_pvc}
    if all(os.environ.get(k) == v or v is None for k, v in env_images.items()):
        return _compile_here(output)
    env = {**os.environ, **{k: v for k, v in env_images.items() if v}}
    code = f"from pathlib import Path; from pipelines.compile import _compile_here; [print(p) for p in _compile_here(Path({str(output)!r}))]"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise CompileError(f"compiling with images {env_images} failed:\n{result.stderr[-2000:]}", "check the image references.")
    return [Path(line) for line in result.stdout.splitlines() if line.strip()]
