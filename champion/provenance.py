"""Which source a run or a compiled pipeline came from."""

from __future__ import annotations

import subprocess
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent


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
