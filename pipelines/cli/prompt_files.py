"""``champion lint``, ``lock`` and ``sync-prompts``: the prompt files, their lock and MLflow's prompt registry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from champion.parameters import DEFAULT_REGISTERED_MODEL
from pipelines.cli.app import err
from pipelines.cli.options import PROMPTS_OPTION
from prompts.loader import PROMPTS_DIR
from prompts.lock import LOCK_NAME, load_file, prompt_files, write_lock
from prompts.lock import lint as lint_prompts


def lint(prompts_dir: Optional[Path] = PROMPTS_OPTION) -> None:
    """Check every prompt: it parses, renders in the sandbox, and matches prompts/prompts.lock."""

    problems = lint_prompts(prompts_dir) if prompts_dir else lint_prompts()
    for problem in problems:
        err.print(f"[red]✗[/] {problem.where}: {problem.problem}\n  [bold]fix:[/] {problem.fix}")
    if problems:
        raise typer.Exit(1)
    err.print("[green]✓[/] every prompt parses and matches prompts.lock")


def lock(prompts_dir: Optional[Path] = PROMPTS_OPTION) -> None:
    """Record the digest of every prompt version in prompts/prompts.lock (refuses to re-lock a changed version)."""

    digests = write_lock(prompts_dir) if prompts_dir else write_lock()
    err.print(f"[green]✓[/] {len(digests)} prompt versions in {LOCK_NAME}")


def sync_prompts_command(
    tracking_uri: str = typer.Option(
        ..., envvar="MLFLOW_TRACKING_URI", help="MLflow tracking URI (a server, or sqlite:///.champion/mlflow.db)."
    ),
    registered_model_name: str = typer.Option(
        DEFAULT_REGISTERED_MODEL, help="Registered model whose champion's prompt gets the 'champion' alias."
    ),
    prompts_dir: Optional[Path] = PROMPTS_OPTION,
) -> None:
    """Register every prompt version in MLflow's prompt registry; align the 'champion' prompt alias with the live bundle."""
    from registry.registry import sync_prompts

    root = prompts_dir or PROMPTS_DIR
    prompts = [load_file(ref, path, root) for ref, path in prompt_files(root).items() if not ref.startswith("judges/")]
    synced = sync_prompts(tracking_uri, registered_model_name, prompts)
    for ref, version in synced.items():
        typer.echo(f"{ref} -> prompts:/{ref.split('@')[0]}/{version}")
