"""Which source a run or a compiled pipeline came from."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent
# The packages a step's process runs: the steps and the library code under them (pipelines/ only wires them).
STEP_PACKAGES = ("champion", "components", "evaluators", "generation", "prompts", "registry", "serving", "training")


def code_digest(root: Path = SOURCE) -> str:
    """The code the steps run, as content: champion's step and library sources (with the report templates) and
    every installed distribution's version. A cluster's step cache keys on the step's image, so a new release
    never reuses an older one's outputs; the local step cache is kept per this digest for the same reason (an
    upgraded gate must not serve a decision the old one made), and a commit that changes no code keeps it."""
    digest = hashlib.sha256()
    for package in STEP_PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.suffix in (".py", ".j2") and "__pycache__" not in path.parts:
                digest.update(f"{path.relative_to(root)}\0".encode())
                digest.update(path.read_bytes())
    # A distribution's folder is named by its name and version: reading every METADATA would cost a fifth of a second.
    installed = {path.name for folder in sys.path if Path(folder).is_dir() for path in Path(folder).glob("*.dist-info")}
    for name in sorted(installed):
        digest.update(f"{name}\0".encode())
    return digest.hexdigest()


def git_commit(repo: Path = SOURCE, *, short: bool = False, mark_dirty: bool = True) -> str:
    """The commit of ``repo`` (by default the checkout champion runs from, not the current directory),
    with ``-dirty`` when tracked files changed; "unknown" outside a checkout (an installed package)."""
    try:
        args = ["git", "-C", str(repo), "rev-parse", *(["--short=8"] if short else []), "HEAD"]
        commit = subprocess.run(args, capture_output=True, text=True, check=True, timeout=10).stdout.strip()
        dirty = (
            mark_dirty
            and subprocess.run(
                ["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            ).stdout.strip()
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit
