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
import os
from pathlib import Path

# Imported from its module, not from kfp.dsl: inside a running task (_KFP_RUNTIME=true) kfp.dsl
# exports only the executor's names, and the step modules must stay importable there.
from kfp.dsl.component_decorator import component

REFS_FILE = Path(__file__).resolve().parent.parent / "images" / "refs.env"
UNSET = "unset.invalid/champion-image-not-configured"  # compile refuses it: set images/refs.env


def read_refs(path: Path = REFS_FILE) -> dict[str, str]:
    if not path.is_file():  # an installed package (inside the image itself) has no refs file and needs none
        return {}
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line and not line.lstrip().startswith("#"))
    return {key.strip(): value.strip() for key, value in pairs}


def image_ref(kind: str, refs: dict[str, str] | None = None) -> str:
    """``CHAMPION_<KIND>_IMAGE``, by digest when ``CHAMPION_<KIND>_IMAGE_DIGEST`` is set (env over file)."""
    refs = {**(read_refs() if refs is None else refs), **{k: v for k, v in os.environ.items() if k.startswith("CHAMPION_")}}
    image = refs.get(f"CHAMPION_{kind}_IMAGE") or UNSET
    digest = refs.get(f"CHAMPION_{kind}_IMAGE_DIGEST", "")
    if digest and "@" not in image:
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        image = f"{repository}@{digest}"
    return image


CPU_IMAGE = image_ref("CPU")
GPU_IMAGE = image_ref("GPU")

cpu_step = functools.partial(component, base_image=CPU_IMAGE, install_kfp_package=False)
gpu_step = functools.partial(component, base_image=GPU_IMAGE, install_kfp_package=False)
