"""The pipeline's steps, one module each.

Every module has a plain function that does the work (tested without KFP) and a thin component
named ``<step>_op`` around it, declared with ``@cpu_step`` or ``@gpu_step``. Components run in a
pinned champion image with the project pre-installed, so they never pip-install at pod start.

Images are chosen when the pipeline is compiled. Their references live in one place,
``images/refs.env`` (built from ``images/cpu.Dockerfile`` and ``images/gpu.Dockerfile``); environment
variables of the same names override it. With a ``*_DIGEST`` the image is named by digest
(``repo@sha256:…``), so a re-pushed tag cannot change what a compiled pipeline runs. Locally the
images are ignored: kfp.local runs every step in the current virtual environment.
"""

import functools

# Imported from its module, not from kfp.dsl: inside a running task (_KFP_RUNTIME=true) kfp.dsl
# exports only the executor's names, and the step modules must stay importable there.
from kfp.dsl.component_decorator import component

from champion.images import UNSET, image_ref, read_refs  # noqa: F401 (re-exported for compile and tests)

CPU_IMAGE = image_ref("CPU")
GPU_IMAGE = image_ref("GPU")

cpu_step = functools.partial(component, base_image=CPU_IMAGE, install_kfp_package=False)
gpu_step = functools.partial(component, base_image=GPU_IMAGE, install_kfp_package=False)
