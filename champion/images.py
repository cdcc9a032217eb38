"""Image references of the pipeline steps: one place, ``images/refs.env``, overridden by environment
variables of the same names. With a ``*_DIGEST`` the image is named by digest (``repo@sha256:…``), so a
re-pushed tag cannot change what a compiled pipeline runs."""

import os
from pathlib import Path

REFS_FILE = Path(__file__).resolve().parent.parent / "images" / "refs.env"
UNSET = "unset.invalid/champion-image-not-configured"  # compile refuses it: set images/refs.env


def read_refs(path: Path = REFS_FILE) -> dict[str, str]:
    if not path.is_file():  # an installed package (inside the image itself) has no refs file and needs none
        return {}
    pairs = (
        line.split("=", 1)
        for line in path.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    )
    return {key.strip(): value.strip() for key, value in pairs}


def image_ref(kind: str, refs: dict[str, str] | None = None) -> str:
    """``CHAMPION_<KIND>_IMAGE``, by digest when ``CHAMPION_<KIND>_IMAGE_DIGEST`` is set (env over file)."""
    refs = {
        **(read_refs() if refs is None else refs),
        **{k: v for k, v in os.environ.items() if k.startswith("CHAMPION_")},
    }
    image = refs.get(f"CHAMPION_{kind}_IMAGE") or UNSET
    digest = refs.get(f"CHAMPION_{kind}_IMAGE_DIGEST", "")
    if digest and "@" not in image:
        repository = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
        image = f"{repository}@{digest}"
    return image
