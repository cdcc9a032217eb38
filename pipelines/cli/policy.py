"""``champion policy``: check a gate policy against an evaluator config; ``champion plan``: the examples it needs."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from champion.errors import ChampionError
from pipelines.cli.app import err
from pipelines.cli.options import WORKSPACE_OPTION

policy_app = typer.Typer(
    no_args_is_help=True, help="Gate policies: check one against the evaluator config before any model loads."
)


@policy_app.command("check")
def policy_check(
    policy: str = typer.Argument(
        "default", help="Gate policy: a name in evaluators/policies/ or a path to a YAML file."
    ),
    evaluators: str = typer.Option(
        "default", "--evaluators", help="Evaluator config whose scores the policy will judge."
    ),
) -> None:
    """Say everything wrong with a gate policy: unknown metrics, wrong directions or kinds, meaningless margins, nothing left to vote."""
    from evaluators.config import load_evaluator_config
    from evaluators.policy import load_policy, policy_problems, policy_warnings

    loaded = load_policy(policy)
    catalog = load_evaluator_config(evaluators).metric_catalog()
    problems = policy_problems(loaded, catalog)
    for problem in problems:
        err.print(f"[bold red]error:[/] {problem.where}: {problem.problem}\n  [bold]fix:[/] {problem.fix}")
    for warning in policy_warnings(loaded, catalog):
        err.print(f"[yellow]warning:[/] {warning}")
    if problems:
        raise typer.Exit(2)
    typer.echo(
        f"policy {loaded.name}@{loaded.version} fits evaluator config {evaluators}: {len(loaded.metrics)} metric(s), {len(loaded.slices)} slice(s), multiplicity {loaded.multiplicity}"
    )


def _champion_scores(workspace: Path) -> Path:
    """The scored table of the run that last moved the champion alias in this workspace (from its audit log)."""
    from registry.registry import audit_events

    moves = [event for event in audit_events(workspace / "audit.jsonl") if event.get("event") == "alias_moved"]
    table = workspace / "reports" / str(moves[-1].get("pipeline_run")) / "scores.jsonl" if moves else None
    if table is None or not table.exists():
        raise ChampionError(
            f"no promoted run's scores in {workspace}: there is no champion's scored table to plan from.",
            "run `champion run` first, or pass a scored table with --scores (a run's reports/<run>/scores.jsonl).",
        )
    return table


def _rows(path: Path) -> list[dict]:
    from champion.jsonl import read_jsonl

    try:
        return read_jsonl(path)
    except (OSError, ValueError) as exc:
        raise ChampionError(f"cannot read the scored table {path}: {exc}", "pass a run's scores.jsonl.") from None


def plan(
    gate_config: str = typer.Option("default", help="Gate policy: a name in evaluators/policies/ or a YAML path."),
    scores: Optional[Path] = typer.Option(
        None, help="The champion's scored table (scores.jsonl); default: the newest promoted run in the workspace."
    ),
    pilot: Optional[Path] = typer.Option(
        None, help="A challenger's scored table on the same examples: the spread of the differences is measured."
    ),
    data: Optional[str] = typer.Option(None, help="The evaluation set to plan for (its size); default: the table's."),
    power: float = typer.Option(
        0.8, min=0.5, max=0.99, help="Chance of confirming a challenger as good as the champion."
    ),
    correlation: float = typer.Option(
        0.5, min=-1.0, max=0.99, help="Without --pilot: assumed correlation of the two bundles' scores per example."
    ),
    workspace: Path = WORKSPACE_OPTION,
) -> None:
    """Examples each compared metric needs for its margin: fixed-n, and with the policy's sequential looks."""
    from rich.console import Console
    from rich.table import Table

    from champion.data import load_rows
    from evaluators.planning import plan as make_plan
    from evaluators.policy import load_policy

    policy = load_policy(gate_config)
    table_path = scores or _champion_scores(workspace)
    champion_rows = _rows(table_path)
    examples = len(load_rows(data)) if data else len(champion_rows)
    plans = make_plan(
        policy,
        champion_rows,
        examples=examples,
        power=power,
        pilot_rows=_rows(pilot) if pilot else None,
        correlation=correlation,
    )
    compared = [name for name, rule in policy.metrics.items() if rule.compare]
    missing = [name for name in compared if name not in {row.metric for row in plans}]
    if not plans:
        raise ChampionError(
            f"{table_path} has fewer than two scores of each metric the policy compares ({', '.join(compared)}).",
            "pass the scores.jsonl of a run scored with the evaluator config this policy judges.",
        )
    for name in missing:
        err.print(f"[yellow]warning:[/] {name}: fewer than two scores in {table_path}, not planned.")
    out = Table(title=f"{policy.name}@{policy.version} on {examples} examples, power {power:.0%} (from {table_path})")
    for column in (
        "metric",
        "margin",
        "sd of differences",
        "level",
        "fixed-n needs",
        "fixed-n power",
        "sequential power",
        "expected examples",
    ):
        out.add_column(column)
    for row in plans:
        out.add_row(
            row.metric,
            f"{row.margin:.3g}",
            f"{row.sd_difference:.3g} ({row.spread_from})",
            f"{row.level:.4f}",
            str(row.fixed_n),
            f"{row.fixed_power:.0%}",
            f"{row.sequential_power:.0%}" if row.sequential_power is not None else row.note,
            f"{row.expected_examples:.0f}" if row.expected_examples is not None else "",
        )
    Console(width=200).print(out)
