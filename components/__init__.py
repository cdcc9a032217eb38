"""The pipeline's steps, one module each; this package holds nothing else.

Each module declares one KFP component named ``<step>_op`` (with ``@cpu_step`` or ``@gpu_step``) and a
``STEP = Step(...)``: how ``champion run`` titles it, its version, and whether KFP may cache it. Every
table of steps (what ``champion compile`` writes, which steps are cached, the version label on each pod,
the titles the CLI prints) is derived from these modules by ``registry()``: a new step is one new module
here and one line of wiring in ``pipelines/``. The work itself is in the library packages below (champion,
evaluators, registry, serving, training); a component only unpacks its inputs and writes its outputs.

Components run in a pinned champion image with the project pre-installed, so they never pip-install at
pod start. Images are chosen when the pipeline is compiled. Their references live in one place,
``images/refs.env`` (built from ``images/cpu.Dockerfile`` and ``images/gpu.Dockerfile``); environment
variables of the same names override it. With a ``*_DIGEST`` the image is named by digest
(``repo@sha256:…``), so a re-pushed tag cannot change what a compiled pipeline runs. Locally the
images are ignored: kfp.local runs every step in the current virtual environment.
"""

import functools
import importlib
import pkgutil
from dataclasses import dataclass
from typing import Any

# Imported from its module, not from kfp.dsl: inside a running task (_KFP_RUNTIME=true) kfp.dsl
# exports only the executor's names, and the step modules must stay importable there.
from kfp.dsl.component_decorator import component

from champion.images import UNSET, image_ref, read_refs  # noqa: F401 (re-exported for compile and tests)

CPU_IMAGE = image_ref("CPU")
GPU_IMAGE = image_ref("GPU")

cpu_step = functools.partial(component, base_image=CPU_IMAGE, install_kfp_package=False)
gpu_step = functools.partial(component, base_image=GPU_IMAGE, install_kfp_package=False)


@dataclass(frozen=True)
class Step:
    """What the pipelines know about a step besides its signature, declared once in its module."""

    title: str  # what `champion run` shows while the step runs
    version: str  # the component's version: its description states it, and each pod carries it as a label
    # KFP may serve it from its step cache: only steps that are pure functions of their (pinned) inputs. The
    # others read the registry or have side effects (MLflow, the alias, the audit log, KServe): they always run.
    cacheable: bool


@dataclass(frozen=True)
class Registered:
    module: str  # the module's name in components/, also the compiled file's name
    op: Any  # the KFP component
    step: Step

    @property
    def task_name(self) -> str:
        """The name KFP gives its tasks and executors (``pin-inputs-op``)."""
        return self.op.component_spec.name


@functools.cache
def registry() -> dict[str, Registered]:
    """Every step module of this package, by module name, in alphabetical order."""
    found = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda info: info.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        ops = [
            value for name, value in vars(module).items() if name.endswith("_op") and hasattr(value, "component_spec")
        ]
        if len(ops) != 1 or not isinstance(getattr(module, "STEP", None), Step):
            raise TypeError(f"components/{info.name}.py must declare one <step>_op component and STEP = Step(...)")
        found[info.name] = Registered(info.name, ops[0], module.STEP)
    return found


def by_task_name() -> dict[str, Registered]:
    return {registered.task_name: registered for registered in registry().values()}
