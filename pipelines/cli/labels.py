"""``champion labels``: labelled sets for the judge's agreement with people."""

from __future__ import annotations

from pathlib import Path

import typer

from champion.errors import ChampionError
from champion.inputs import read_text
from champion.jsonl import write_jsonl
from pipelines.cli.app import fail

labels_app = typer.Typer(no_args_is_help=True, help="Labelled sets: the judge's agreement with people.")


@labels_app.command("export")
def labels_export(
    report: Path = typer.Argument(..., help="A gate report (gate_report.html) of a run with a champion."),
    output: Path = typer.Option(..., help="JSONL file to write (a labelled set with 'human' empty)."),
) -> None:
    """Write a gate report's example pairs for review; filled in, the file is a labelled set for the judge check."""
    from evaluators.reliability import review_items_from_report

    text = read_text(report, "gate report")
    if 'id="decision"' not in text:  # every gate report states its decision under this id
        fail(
            ChampionError(
                f"{report} is not a champion gate report.",
                "pass the gate_report.html of a run (its path is in the run's summary, under reports).",
            )
        )
    items = review_items_from_report(text)
    if not items:
        fail(
            ChampionError(
                f"{report} holds no example pairs (a first run, with no champion, has nothing to compare).",
                "export the report of a run that compared a challenger with a champion.",
            )
        )
    write_jsonl(items, output)
    typer.echo(f"{len(items)} pairs written to {output}: fill in 'human' (A = champion, B = challenger, or tie)")
