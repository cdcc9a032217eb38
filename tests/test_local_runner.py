"""The local runner learns what happened from kfp.local's own task records and the steps' typed error
records, never from log text."""

import ast
import inspect

from champion.errors import StepError, record_step_errors
from tests.conftest import REPO


def test_the_one_kfp_local_seam_keeps_its_signature():
    """StepTracker wraps these two orchestrator functions; a kfp upgrade that changes them fails here,
    not silently in a user's progress display."""
    from kfp.local.orchestrator import task_executor

    assert "task_name" in inspect.signature(task_executor.execute_single_task).parameters
    assert callable(task_executor.task_dispatcher.run_single_task_implementation)


def test_nothing_in_the_cli_or_the_runner_parses_logs():
    for path in ("pipelines/local.py", *(f"pipelines/cli/{p.name}" for p in (REPO / "pipelines" / "cli").glob("*.py"))):
        tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
        calls = {
            node.func.attr
            for node in ast.walk(tree)
            if isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "re"
        }
        assert not calls, (path, calls)


def test_a_failing_process_leaves_its_typed_error(tmp_path):
    import subprocess
    import sys

    code = (
        "from champion.step_process import begin_step; begin_step()\n"
        "from champion.errors import DataError; raise DataError('row 2 is empty', 'fill it in')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={"CHAMPION_STEP_ERRORS": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 1 and "Traceback" in result.stderr  # the traceback is still printed for the log
    records = list(tmp_path.glob("*.json"))
    assert len(records) == 1
    assert StepError(**__import__("json").loads(records[0].read_text())) == StepError(
        "DataError", "row 2 is empty", "fill it in"
    )


def test_importing_champion_changes_nothing_in_the_process(tmp_path):
    import subprocess
    import sys

    code = "import sys; hook = sys.excepthook; import champion, champion.errors; assert sys.excepthook is hook"
    env = {"CHAMPION_STEP_ERRORS": str(tmp_path), "CHAMPION_RUN_ID": "r", "PATH": "/usr/bin:/bin"}
    subprocess.run([sys.executable, "-c", code, "--function_to_execute"], check=True, cwd=REPO, env=env)
    assert not list(tmp_path.iterdir())


def test_the_hook_keeps_the_previous_one(tmp_path, monkeypatch):
    import sys

    seen = []
    monkeypatch.setattr(sys, "excepthook", lambda *args: seen.append(args[0]))
    record_step_errors(str(tmp_path))
    sys.excepthook(ValueError, ValueError("boom"), None)
    assert seen == [ValueError] and list(tmp_path.glob("*.json"))


def test_the_local_step_cache_is_kept_per_version_of_the_code_the_steps_run(tmp_path):
    """An upgraded gate must not serve a decision the old one cached: the local step cache's folder is named by
    the steps' code (a cluster's cache keys on the step's image). A change to that code is a new folder; an
    edited prompt (a pinned input) and an editor's lock file are not code, and every process of the environment
    computes the same digest, wherever it runs from."""
    import os
    import shutil
    import subprocess
    import sys

    from champion.provenance import SOURCE, STEP_PACKAGES, code_digest

    for package in STEP_PACKAGES:
        shutil.copytree(SOURCE / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_digest(tmp_path) == code_digest()
    prompt = next((tmp_path / "prompts").rglob("v1.yaml"))
    prompt.write_text(prompt.read_text() + "# reworded\n")
    (tmp_path / "evaluators" / ".#gate.py").symlink_to("root@host.1234:1700000000")  # Emacs's lock: dangling
    assert code_digest(tmp_path) == code_digest()
    gate = tmp_path / "evaluators" / "gate.py"
    gate.write_text(gate.read_text() + "\n# a fix to the engine\n")
    fixed = code_digest(tmp_path)
    assert fixed != code_digest()
    lexicon = next((tmp_path / "evaluators" / "nltk_data").rglob("*.zip"))  # data a cacheable step reads
    lexicon.write_bytes(lexicon.read_bytes() + b"\0")
    assert code_digest(tmp_path) != fixed

    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "stray-1.0.dist-info").mkdir(parents=True)  # "" on sys.path must not bring it in
    other = subprocess.run(
        [sys.executable, "-c", "from champion.provenance import code_digest; print(code_digest())"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert other.stdout.strip() == code_digest()
