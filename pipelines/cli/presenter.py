"""What a run looks like on the terminal: step progress and the run summary."""

from __future__ import annotations

from typing import Callable

from rich.console import Console
from rich.table import Table

from pipelines.cli.app import err


def progress(status) -> Callable[[str, str], None]:
    """Print each step's state as the run reports it (champion.pipelines.local.StepTracker)."""

    from components import by_task_name  # the steps (and kfp) load only when a run starts, not for --help

    titles = {name: registered.step.title for name, registered in by_task_name().items()}

    def on_event(task: str, state: str) -> None:
        base, _, index = task.partition("[")  # scoring-loop steps carry their bundle's index: fetch-weights-op[1]
        title = titles.get(base, task) + (f" (bundle {int(index.rstrip(']')) + 1})" if index else "")
        if state == "running":
            status.update(f"{title}…")
        elif state == "succeeded":
            err.print(f"[green]✓[/] {title}")
        elif state == "cached":
            err.print(f"[green]✓[/] {title} [dim](step cache)[/]")
        else:
            err.print(f"[red]✗[/] {title} ({state})")

    return on_event


def print_summary(summary: dict) -> None:
    out = Console(soft_wrap=True)
    table = Table(title="champion run", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    word = summary["decision"]
    table.add_row(
        "decision",
        {
            "promoted": "[green]PROMOTED[/]",
            "approved": "[green]APPROVED[/] (gate passed; not promoted)",
            "rejected": "[red]REJECTED[/]",
        }[word]
        + f"  (gate {summary['gate']})",
    )
    if summary.get("decided_at"):  # a sequential gate: where it stopped, and what each look cost
        looks = summary.get("looks") or []
        table.add_row(
            "looks",
            summary["decided_at"]
            + ("; " + ", ".join(f"look {x['look']}: {x['gate']} in {x['seconds']} s" for x in looks) if looks else ""),
        )
    champion = summary["champion"]
    table.add_row(
        "compared with",
        f"champion version {champion['version']} (bundle {champion['bundle_id'][:12]}…)"
        if champion
        else "no champion yet: bootstrap rule (absolute floors only)",
    )
    _add_checks(table, summary)
    _add_judge(table, summary.get("judge"))
    _add_outcome(table, summary)
    out.print(table)
    _print_reports(out, summary)


def _add_checks(table: Table, summary: dict) -> None:
    """The bundle, then each gate check and every metric that was only reported."""
    prompt = summary["bundle"]["prompt"]
    table.add_row("bundle", f"{summary['bundle_id'][:16]}…  ({prompt['name']}@{prompt['version']})")
    marks = {
        "pass": "[green]pass[/]",
        "fail": "[red]fail[/]",
        "inconclusive": "[red]inconclusive[/]",
        "excluded": "[yellow]excluded[/]",
    }
    for check in summary["checks"]:
        where = check["metric"] + (f" [{check['slice']}]" if check.get("slice") else "")
        table.add_row(f"  {where} ({check['test']})", f"{marks[check['status']]}  {check['reason']}")
    gated = {c["metric"] for c in summary["checks"]}
    for name, value in sorted(summary["metrics"].items()):
        if name not in gated and not name.startswith("judge_spent_"):
            table.add_row(f"  {name}", f"{value:.3f} (reported, not gated)")


def _add_judge(table: Table, judge: dict | None) -> None:
    """Whether the judge voted (and why not), its agreement with people, and what it cost."""
    if judge:
        voted = (
            "[green]votes[/]"
            if judge["voted"]
            else "[yellow]excluded[/] (" + (", ".join(judge["failing_families"]) or "; ".join(judge["reasons"])) + ")"
        )
        kappa = f", kappa {judge['kappa']:.2f} (low {judge['kappa_low']:.2f})" if judge.get("kappa") is not None else ""
        spent = judge.get("spent_this_run") or {}
        table.add_row("judge", voted + kappa)
        table.add_row(
            "judge cost",
            f"the check: {judge['check_cost']['calls']} calls / "
            f"{judge['check_cost']['prompt_tokens'] + judge['check_cost']['completion_tokens']} tokens; "
            f"spent this run (check and grading, cache misses only): {spent.get('calls', 0)} calls / "
            f"{spent.get('prompt_tokens', 0) + spent.get('completion_tokens', 0)} tokens",
        )


def _add_outcome(table: Table, summary: dict) -> None:
    """Where the bundle went (MLflow, the deployment) and what the run took (time, containers, caches)."""
    table.add_row(
        "MLflow",
        f"{summary['registered_model']} v{summary['model_version']}"
        + (", alias champion moved here" if summary["promoted"] else ", alias unchanged"),
    )
    deployment = {
        "rendered": "rendered: InferenceService rendered and validated (no cluster)",
        "rolled_out": "rolled_out",
        "rolled_back": "[red]rolled_back[/]",
    }.get(summary["deployment"], summary["deployment"])
    table.add_row("deployment", f"{deployment}: {summary.get('deployment_reason', '')}")
    table.add_row("wall time", f"{summary['wall_seconds']} s")
    containers = summary.get("containers") or {}
    if containers:
        images = sorted({entry["image"] for entry in containers.values()})
        users = sorted({entry["user"] for entry in containers.values()})
        table.add_row(
            "containers",
            f"{len(containers)} task(s) in {', '.join(images)} as user {', '.join(users)}, "
            f"network {', '.join(sorted({entry['network'] for entry in containers.values()}))}",
        )
    cache = summary.get("cache") or {}
    if cache.get("steps"):
        table.add_row("step cache", f"{len(cache['steps'])} step(s) reused: {', '.join(cache['steps'])}")
    if cache.get("examples"):
        table.add_row(
            "example cache",
            ", ".join(
                f"{kind} {c['hits']}/{c['hits'] + c['misses']} hits" for kind, c in sorted(cache["examples"].items())
            ),
        )


def _print_reports(out: Console, summary: dict) -> None:
    out.print("[bold]Why:[/] " + "; ".join(summary["reasons"]))
    out.print("[bold]Reports:[/]")
    for name, path in summary["reports"].items():
        if path:
            out.print(f"  {name:<14} {path}")
    out.print(f"  {'mlflow':<14} {summary['mlflow_tracking_uri']}")
