"""``champion run`` and ``champion monitor``: the pipelines on this machine (kfp.local)."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console

from champion.errors import ChampionError
from champion.parameters import PromotionParameters, ScheduledEvalParameters
from pipelines.cli.app import err
from pipelines.cli.options import RUNNER_OPTION, WORKSPACE_OPTION, option, pipeline_parameters
from pipelines.cli.presenter import print_summary, progress
from pipelines.cli.serving import serve_locally
from pipelines.containers import Runner


def run(
    data: str = option("data_source"),
    prompt: str = option("prompt"),
    model: str = option("model_source"),
    gate_config: str = option("gate_config"),
    evaluator_config: str = option("evaluator_config"),
    limit: int = option("limit"),
    backend: str = option("generation_backend"),
    batch_size: int = option("batch_size"),
    registered_model_name: str = option("registered_model_name"),
    fine_tune_steps: int = option("fine_tune_steps"),
    eval_fraction: float = option("eval_fraction"),
    promote: bool = option("promote", flag="--promote/--no-promote"),
    context_overflow: str = option("context_overflow"),
    bootstrap: bool = option("allow_bootstrap", flag="--bootstrap"),
    fail_on_reject: bool = typer.Option(False, help="Exit with status 1 when the gate rejects the bundle (for CI)."),
    param: list[str] = typer.Option(
        [], help="Any other pipeline parameter, NAME=VALUE (repeatable; see docs/reference/parameters.md)."
    ),
    workspace: Path = WORKSPACE_OPTION,
    weights_cache: Optional[Path] = typer.Option(
        None,
        envvar="CHAMPION_WEIGHTS_CACHE",
        help="Cache of converted/fetched weights (default: <workspace>/cache/weights).",
    ),
    use_cache: bool = typer.Option(
        True,
        "--cache/--no-cache",
        help="Reuse unchanged steps (KFP's step cache) and per-example generations, embeddings and judge verdicts.",
    ),
    as_json: bool = typer.Option(
        False, "--json", help="Print the summary as one JSON object on stdout (progress goes to stderr)."
    ),
    serve_after: bool = typer.Option(
        False, "--serve", help="If the bundle is promoted, serve it locally afterwards (see `champion serve`)."
    ),
    port: int = typer.Option(8080, help="Port for --serve."),
    runner: Runner = RUNNER_OPTION,
) -> None:
    """Run the promotion pipeline locally (kfp.local) and print the decision."""
    with _json_on_failure(as_json):
        from pipelines.local import LocalSettings, run_promotion

        given = dict(
            data_source=data,
            prompt=prompt,
            model_source=model,
            gate_config=gate_config,
            evaluator_config=evaluator_config,
            limit=limit,
            generation_backend=backend,
            batch_size=batch_size,
            registered_model_name=registered_model_name,
            fine_tune_steps=fine_tune_steps,
            eval_fraction=eval_fraction,
            promote=promote,
            context_overflow=context_overflow,
            allow_bootstrap=bootstrap,
        )
        params = pipeline_parameters(PromotionParameters, given, param)
        settings = LocalSettings(workspace=workspace, weights_cache=weights_cache, use_cache=use_cache, runner=runner)
        with err.status("Starting the local pipeline…") as status:
            summary = run_promotion(params, settings, progress(status))
        if as_json:
            sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        else:
            print_summary(summary)
        if fail_on_reject and (
            summary["decision"] == "rejected" or (params.promote and summary["decision"] != "promoted")
        ):
            raise typer.Exit(1)
        if serve_after:
            if not summary["promoted"]:
                err.print("[yellow]not serving:[/] the bundle was not promoted.")
                raise typer.Exit(1 if fail_on_reject else 0)
            serve_locally(
                workspace, params.registered_model_name, "", summary["bundle_id"], weights_cache, "127.0.0.1", port
            )


@contextlib.contextmanager
def _json_on_failure(as_json: bool) -> Iterator[None]:
    """With --json, stdout always carries one JSON document: the summary, or the error that stopped the run."""
    try:
        yield
    except ChampionError as exc:
        if as_json:
            error = {"problem": exc.problem, "fix": exc.fix, "exit_code": getattr(exc, "exit_code", 2)}
            sys.stdout.write(json.dumps({"decision": None, "error": error}, indent=2, sort_keys=True) + "\n")
        raise


def monitor(
    data: str = option("data_source", ScheduledEvalParameters, "monitor"),
    gate_config: str = option("gate_config", ScheduledEvalParameters, "monitor"),
    evaluator_config: str = option("evaluator_config", ScheduledEvalParameters, "monitor"),
    limit: int = option("limit", ScheduledEvalParameters, "monitor"),
    webhook_url: str = option("webhook_url", ScheduledEvalParameters, "monitor", envvar="CHAMPION_WEBHOOK_URL"),
    param: list[str] = typer.Option(
        [], help="Any other parameter of the scheduled evaluation, NAME=VALUE (repeatable)."
    ),
    workspace: Path = WORKSPACE_OPTION,
    weights_cache: Optional[Path] = typer.Option(
        None, envvar="CHAMPION_WEIGHTS_CACHE", help="Cache of converted/fetched weights."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    runner: Runner = RUNNER_OPTION,
) -> None:
    """Run the scheduled evaluation of the live champion locally; exit 1 on an alert. Never promotes."""
    from pipelines.local import LocalSettings, run_scheduled_eval

    with err.status("Evaluating the live champion…"):
        params = pipeline_parameters(
            ScheduledEvalParameters,
            dict(
                data_source=data,
                gate_config=gate_config,
                evaluator_config=evaluator_config,
                limit=limit,
                webhook_url=webhook_url,
            ),
            param,
        )
        result = run_scheduled_eval(
            params, LocalSettings(workspace=workspace, weights_cache=weights_cache, runner=runner)
        )
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        mark = "[green]healthy[/]" if result["status"] == "healthy" else "[red]ALERT[/]"
        Console().print(f"champion version {result['champion_version']}: {mark}")
        for reason in result["failed_checks"]:
            Console().print(f"  [red]✗[/] {reason}")
    if result["status"] != "healthy":
        raise typer.Exit(1)
