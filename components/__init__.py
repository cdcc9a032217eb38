"""The pipeline's steps, one module each.

Every module has a plain function that does the work (tested without KFP) and a thin component
named ``<step>_op`` around it, declared with ``@cpu_step`` or ``@gpu_step``. Components run in a
pinned champion image with the project pre-installed, so they never pip-install at pod start.

Images are chosen when the pipeline is compiled: set CHAMPION_CPU_IMAGE / CHAMPION_GPU_IMAGE
(compile.sh passes them; use digests, ``repo@sha256:...``, for reproducible runs). Locally the
images are ignored: kfp.local runs every step in the current virtual environment.
"""

import functools
import os

# Imported from its module, not from kfp.dsl: inside a running task (_KFP_RUNTIME=true) kfp.dsl
# exports only the executor's names, and the step modules must stay importable there.
from kfp.dsl.component_decorator import component

CPU_IMAGE = os.environ.get("CHAMPION_CPU_IMAGE", "ghcr.io/champion-mlops/champion:0.1.0")
GPU_IMAGE = os.environ.get("CHAMPION_GPU_IMAGE", "ghcr.io/champion-mlops/champion-gpu:0.1.0")

cpu_step = functools.partial(component, base_image=CPU_IMAGE, install_kfp_package=False)
gpu_step = functools.partial(component, base_image=GPU_IMAGE, install_kfp_package=False)
