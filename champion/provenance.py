"""Which source a run or a compiled pipeline came from."""

from __future__ import annotations

import functools
import subprocess
import sys
import sysconfig
from pathlib import Path

from champion.digests import sha256_file, sha256_json

SOURCE = Path(__file__).resolve().parent.parent
# The packages a step's process runs: the steps and the library code under them (pipelines/ only wires them).
STEP_PACKAGES = ("champion", "components", "evaluators", "generation", "prompts", "registry", "serving", "training")
# What of those packages the steps run or read as part of the code: sources, the report templates, the vendored
# contracts (CRDs, the vLLM contract) and data (NLTK's lexicon). Prompts, policies, evaluator configs, probes
# and labels are left out: they reach a step as pinned inputs, so editing a prompt keeps the cache.
CODE_SUFFIXES = (".py", ".j2", ".json", ".zip")


def code_digest(root: Path = SOURCE) -> str:
    """The code the steps run, as content: champion's step and library files (CODE_SUFFIXES), the Python version
    and every installed distribution's name and version. A cluster's step cache keys on the step's image, so a
    new release never reuses an older one's outputs; the local step cache is kept per this digest for the same
    reason (an upgraded gate must not serve a decision the old one made), and a commit that changes no code
    keeps it."""
    files = {
        str(path.relative_to(root)): sha256_file(path)
        for package in STEP_PACKAGES
        for path in sorted((root / package).rglob("*"))
        # Regular files only: an editor's lock file (.#gate.py) is a dangling link.
        if path.suffix in CODE_SUFFIXES and "__pycache__" not in path.parts and path.is_file() and not path.is_symlink()
    }
    return sha256_json({"python": sys.version, "files": files, "installed": _installed()})


@functools.cache
def _installed() -> tuple[str, ...]:
    """The installed distributions' folder names (``name-version.dist-info``), from the interpreter's own site
    folders: the same in every process of an environment, whatever its working directory (``''`` on sys.path).
    Reading every METADATA would cost a fifth of a second."""
    paths = sysconfig.get_paths()
    folders = {Path(paths["purelib"]), Path(paths["platlib"])}
    return tuple(sorted({p.name for folder in folders if folder.is_dir() for p in folder.glob("*.dist-info")}))


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
