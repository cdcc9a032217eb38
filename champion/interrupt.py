"""Stopping a run stops it.

A champion command that starts processes (kfp.local's step subprocesses, the local predictor) runs
them inside ``stop_on_signals``: SIGINT and SIGTERM first mark the run cancelled (a file named by
``CHAMPION_CANCEL_FILE``, which every step inherits), then terminate every process the command
started (children, grandchildren), and only then raise ``Interrupted`` so that ``finally`` blocks run
and the command exits 130 (SIGINT) or 143 (SIGTERM).

A step that is still running when its run is cancelled checks ``cancelled()`` immediately before any
irreversible act (moving the champion alias), under the same lock the move takes: a cancelled run
never moves the alias afterwards.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

from champion.errors import ChampionError

CANCEL_ENV = "CHAMPION_CANCEL_FILE"
EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


class Interrupted(ChampionError):
    """The command received SIGINT or SIGTERM; everything it started was stopped."""

    def __init__(self, signum: int, promoted: str = "", stopped: str = "") -> None:
        self.signum = signum
        name = signal.Signals(signum).name
        if stopped:  # a command that is not a run (serve): say what stopped, nothing about cancelled runs
            super().__init__(f"stopped by {name}: {stopped}", "start it again with the same command.")
        elif promoted:  # the alias moved before the signal: say so, never "cancelled" as if nothing happened
            super().__init__(
                f"stopped by {name} after this run had already moved the champion alias ({promoted}): that promotion "
                "stands; the steps still running were terminated and the rest of the run was recorded as cancelled.",
                "nothing to redo for the promotion; to undo it, move the alias back in MLflow (the audit log has "
                "the previous version).",
            )
        else:
            super().__init__(
                f"stopped by {name}: every process this command started was terminated, and the run was recorded as cancelled.",
                "run the same command again: finished work is reused from the cache.",
            )

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(signal.Signals(self.signum), 128 + self.signum)


class RunCancelled(ChampionError):
    """This step's run was cancelled; the step refuses to do anything irreversible."""


def cancelled() -> str | None:
    """Why this run was cancelled, or None while it is not."""
    path = os.environ.get(CANCEL_ENV, "")
    if path and Path(path).is_file():
        return Path(path).read_text(encoding="utf-8").strip() or "cancelled"
    return None


def refuse_if_cancelled(what: str) -> None:
    reason = cancelled()
    if reason is not None:
        raise RunCancelled(
            f"the run was cancelled ({reason}), so {what} was not done.",
            "start a new run; nothing was promoted by the cancelled one.",
        )


def descendants(pid: int) -> list[int]:
    """Every living process below ``pid`` (children first), read from /proc, or from ps elsewhere."""
    children: dict[int, list[int]] = {}
    proc = Path("/proc")
    if proc.is_dir():
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(entry.name))
    else:  # macOS: no /proc
        listing = subprocess.run(["ps", "-A", "-o", "pid=,ppid="], capture_output=True, text=True, check=False).stdout
        for line in listing.splitlines():
            child, parent = (int(x) for x in line.split())
            children.setdefault(parent, []).append(child)
    found, queue = [], [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie has exited; it only waits to be reaped
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def terminate_tree(pid: int | None = None, grace_s: float = 5.0) -> list[int]:
    """SIGTERM every process below ``pid`` (default: this one), then SIGKILL whatever is left after ``grace_s``."""
    targets = descendants(os.getpid() if pid is None else pid)
    for target in targets:
        with contextlib.suppress(ProcessLookupError):
            os.kill(target, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and any(_alive(t) for t in targets):
        time.sleep(0.05)
    for target in targets:
        if _alive(target):
            with contextlib.suppress(ProcessLookupError):
                os.kill(target, signal.SIGKILL)
    return targets


@contextlib.contextmanager
def stop_on_signals(on_stop: Callable[[int], None] | None = None, stopped: str = "") -> Iterator[None]:
    """Within the block, SIGINT/SIGTERM run ``on_stop(signum)`` (mark the run cancelled), stop every
    child process, and raise ``Interrupted``. A second signal while stopping is ignored."""
    stopping: list[int] = []

    def handler(signum, _frame):
        if stopping:
            return
        stopping.append(signum)
        if on_stop is not None:
            try:
                on_stop(signum)
            except Exception as exc:  # the stop must go on; say why the marker could not be written
                print(f"champion: could not record the cancellation: {exc}", file=sys.stderr)
        terminate_tree()
        raise Interrupted(signum, stopped=stopped)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
