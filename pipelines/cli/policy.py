"""``champion policy``: check a gate policy against an evaluator config."""

from __future__ import annotations

import typer

from pipelines.cli.app import err

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
    for warning in policy_warnings(loaded):
        err.print(f"[yellow]warning:[/] {warning}")
    if problems:
        raise typer.Exit(2)
    typer.echo(
        f"policy {loaded.name}@{loaded.version} fits evaluator config {evaluators}: {len(loaded.metrics)} metric(s), {len(loaded.slices)} slice(s), multiplicity {loaded.multiplicity}"
    )
