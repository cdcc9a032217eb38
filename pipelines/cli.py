"""The ``champion`` command line.

    champion run                 evaluate, gate and (if it passes) promote the demo bundle, locally
    champion run --prompt qa-oneline --limit 10 --json
    champion compile --output dist
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from champion.errors import ChampionError

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Evaluation-gated promotion of LLM model+prompt bundles on Kubeflow Pipelines.")
err = Console(stderr=True, soft_wrap=True)

STEP_TITLES = {
    "preprocess-data-op": "Preprocess evaluation set",
    "fetch-weights-op": "Fetch weights",
    "resolve-champion-op": "Resolve the champion",
    "batch-generate-op": "Generate answers",
    "evaluate-op": "Score answers and check the judge",
    "drift-op": "Drift report",
    "gate-op": "Gate",
    "register-op": "Register in MLflow",
    "deploy-op": "Render KServe manifest",
    "skip-deploy-op": "Skip deployment",
}


CHAMPION_STEPS = {"fetch-weights-op", "batch-generate-op", "evaluate-op"}


@app.command()
def run(
    data: str = typer.Option("demo", help="Evaluation set: JSONL/CSV/Parquet path, a save_to_disk folder, hf://datasets/NAME (local cache), or 'demo'."),
    prompt: str = typer.Option("qa-concise", help="Prompt: a name in prompts/ (NAME or NAME@VERSION) or a path to a prompt YAML."),
    model: str = typer.Option("smollm2", help="Model source: 'smollm2' (packaged), a folder, a .gguf file, hf://org/name, s3://…"),
    gate_config: str = typer.Option("default", help="Gate policy: a name in evaluators/policies/ or a path to a YAML file."),
    evaluator_config: str = typer.Option("default", help="Evaluator config: a name in evaluators/configs/ or a path to a YAML file."),
    workspace: Path = typer.Option(Path(".champion"), help="Where runs, the weights cache, logs and the sqlite MLflow live."),
    limit: int = typer.Option(0, help="Evaluate only the first N examples (0 = all)."),
    backend: str = typer.Option("transformers", help="Generation backend: transformers or vllm."),
    batch_size: int = typer.Option(16, help="Generation batch size."),
    registered_model_name: str = typer.Option("champion-qa", help="MLflow registered model that holds the bundles."),
    weights_cache: Optional[Path] = typer.Option(None, envvar="CHAMPION_WEIGHTS_CACHE", help="Cache of converted/fetched weights (default: <workspace>/cache/weights)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as one JSON object on stdout (progress goes to stderr)."),
    fail_on_reject: bool = typer.Option(False, help="Exit with status 1 when the gate rejects the bundle (for CI)."),
) -> None:
    """Run the promotion pipeline locally (kfp.local) and print the decision."""
    from pipelines.local import RunOptions, run_promotion

    options = RunOptions(data=data, prompt=prompt, model=model, gate_config=gate_config, evaluator_config=evaluator_config, workspace=workspace, limit=limit, backend=backend, batch_size=batch_size, registered_model_name=registered_model_name, weights_cache=weights_cache)
    try:
        with err.status("Starting the local pipeline…") as status:
            def on_event(task: str, state: str) -> None:
                base = re.sub(r"-\d+$", "", task)
                title = STEP_TITLES.get(base, task) + (" (champion)" if base != task and base in CHAMPION_STEPS else "")
                if state == "running":
                    status.update(f"{title}…")
                elif state in ("success", "skipped"):
                    err.print(f"[green]✓[/] {title}" if state == "success" else f"[dim]– {title} (skipped)[/]")
                else:
                    err.print(f"[red]✗[/] {title} ({state})")

            summary = run_promotion(options, on_event)
    except ChampionError as exc:
        err.print(f"[bold red]error:[/] {exc.problem}")
        if exc.fix:
            err.print(f"[bold]fix:[/] {exc.fix}")
        raise typer.Exit(2) from None
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    else:
        _print_summary(summary)
    if fail_on_reject and summary["decision"] != "promoted":
        raise typer.Exit(1)


def _print_summary(summary: dict) -> None:
    out = Console(soft_wrap=True)
    promoted = summary["decision"] == "promoted"
    table = Table(title="champion run", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    table.add_row("decision", "[green]PROMOTED[/]" if promoted else "[red]REJECTED[/]")
    champion = summary["champion"]
    table.add_row("compared with", f"champion version {champion['version']} (bundle {champion['bundle_id'][:12]}…)" if champion else "no champion yet: bootstrap rule (absolute floors only)")
    prompt = summary["bundle"]["prompt"]
    table.add_row("bundle", f"{summary['bundle_id'][:16]}…  ({prompt['name']}@{prompt['version']})")
    for check in summary["checks"]:
        mark = "[yellow]excluded[/]" if check.get("excluded") else ("[green]pass[/]" if check["passed"] else "[red]fail[/]")
        table.add_row(f"  {check['metric']} ({check['test']})", f"{mark}  {check['reason']}")
    gated = {c["metric"] for c in summary["checks"]}
    for name, value in sorted(summary["metrics"].items()):
        if name not in gated:
            table.add_row(f"  {name}", f"{value:.3f} (reported, not gated)")
    table.add_row("MLflow", f"{summary['registered_model']} v{summary['model_version']}" + (", alias champion moved here" if promoted else ", alias unchanged"))
    table.add_row("deployment", "InferenceService rendered and validated" if summary["deployment"] == "rendered" else "skipped")
    table.add_row("wall time", f"{summary['wall_seconds']} s")
    out.print(table)
    out.print("[bold]Why:[/] " + "; ".join(summary["reasons"]))
    out.print("[bold]Reports:[/]")
    for name, path in summary["reports"].items():
        if path:
            out.print(f"  {name:<14} {path}")
    out.print(f"  {'mlflow':<14} {summary['mlflow_tracking_uri']}")


@app.command("compile")
def compile_command(
    output: Path = typer.Option(Path("dist"), help="Folder for pipelines/<name>.yaml and components/<name>.yaml."),
    cpu_image: Optional[str] = typer.Option(None, envvar="CHAMPION_CPU_IMAGE", help="Image for CPU steps (prefer repo@sha256:…)."),
    gpu_image: Optional[str] = typer.Option(None, envvar="CHAMPION_GPU_IMAGE", help="Image for GPU steps (prefer repo@sha256:…)."),
) -> None:
    """Compile every pipeline and component to IR YAML, byte-identical from run to run, and load each back."""
    from pipelines.compile import compile_all

    try:
        written = compile_all(output, cpu_image=cpu_image, gpu_image=gpu_image)
    except ChampionError as exc:
        err.print(f"[bold red]error:[/] {exc}")
        raise typer.Exit(2) from None
    for path in written:
        typer.echo(str(path))


if __name__ == "__main__":
    app()
