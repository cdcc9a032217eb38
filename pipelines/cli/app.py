"""The ``champion`` application: the Typer app and the one handler that turns a ChampionError into what the user sees."""

from __future__ import annotations

import typer
from rich.console import Console

from champion.errors import ChampionError
from champion.interrupt import Interrupted


class ChampionGroup(typer.core.TyperGroup):
    """The one place a champion error becomes what the user sees: the problem, the fix and exit status 2
    (130/143 when the command was stopped by SIGINT/SIGTERM). Commands just raise."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except ChampionError as exc:
            fail(exc)


app = typer.Typer(
    cls=ChampionGroup,
    add_completion=False,
    no_args_is_help=True,
    help="Evaluation-gated promotion of LLM model+prompt bundles on Kubeflow Pipelines.",
)


err = Console(stderr=True, soft_wrap=True)


def fail(exc: ChampionError, code: int = 2) -> None:
    """Every command reports a champion error the same way: the problem, the fix, exit status 2
    (130/143 when the command was stopped by SIGINT/SIGTERM)."""

    if isinstance(exc, Interrupted):
        err.print(f"[bold yellow]stopped:[/] {exc.problem}")
        err.print(f"[bold]next:[/] {exc.fix}")
        raise typer.Exit(exc.exit_code) from None
    err.print(f"[bold red]error:[/] {exc.problem}")
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}")
    raise typer.Exit(code) from None
