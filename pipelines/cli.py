"""The ``champion`` command line.

    champion run                 evaluate, gate and (if it passes) promote the demo bundle, locally
    champion run --prompt qa-oneline --limit 10 --json
    champion serve                 serve the champion bundle on 127.0.0.1:8080 (OpenAI-compatible chat)
    champion manifests --namespace team-a --output k8s    the runtime and RBAC to apply once per namespace
    champion compile --output dist
"""

from __future__ import annotations

import json
import os
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
    "deploy-op": "Deploy and move the champion alias",
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
    serve_after: bool = typer.Option(False, "--serve", help="If the bundle is promoted, serve it locally afterwards (see `champion serve`)."),
    port: int = typer.Option(8080, help="Port for --serve."),
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
    if fail_on_reject and not summary["promoted"]:
        raise typer.Exit(1)
    if serve_after:
        if not summary["promoted"]:
            err.print("[yellow]not serving:[/] the bundle was not promoted.")
            raise typer.Exit(1 if fail_on_reject else 0)
        _serve(workspace, registered_model_name, "", summary["bundle_id"], weights_cache, "127.0.0.1", port)


def _serve(workspace: Path, registered_model_name: str, alias: str, bundle_id: str, weights_cache: Optional[Path], host: str, port: int) -> None:
    from pipelines.local import OFFLINE_ENV, Workspace
    from pipelines.serve import prepare, serve_bundle

    os.environ.update(OFFLINE_ENV)
    space = Workspace(workspace.resolve())
    if not (space.root / "mlflow.db").is_file():
        err.print(f"[bold red]error:[/] no MLflow registry in {space.root}.")
        err.print("[bold]fix:[/] run `champion run` first (with the same --workspace) so a bundle is promoted.")
        raise typer.Exit(2)
    try:
        with err.status("Fetching the bundle's weights and prompt…"):
            served = prepare(space.mlflow_uri, registered_model_name, alias=alias, bundle_id=bundle_id, weights_cache=weights_cache or os.environ.get("CHAMPION_WEIGHTS_CACHE") or space.weights_cache, work_dir=space.root / "serve")
        err.print(f"[green]✓[/] bundle {served.bundle.id[:16]}… ({served.prompt.name}@{served.prompt.version}), {registered_model_name} version {served.version}")
        err.print(f"Serving on http://{host}:{port}/openai/v1/chat/completions (model {served.name!r}); Ctrl-C stops.")
        err.print(f"  curl -s http://{host}:{port}/openai/v1/chat/completions -H 'content-type: application/json' -d '{{\"model\": \"{served.name}\", \"messages\": [{{\"role\": \"user\", \"content\": \"What is the capital of France?\"}}]}}'")
        serve_bundle(served, host=host, port=port, log_dir=space.logs)
    except ChampionError as exc:
        err.print(f"[bold red]error:[/] {exc.problem}")
        if exc.fix:
            err.print(f"[bold]fix:[/] {exc.fix}")
        raise typer.Exit(2) from None


@app.command()
def serve(
    alias: str = typer.Option("champion", help="Serve the version with this MLflow alias."),
    bundle: str = typer.Option("", help="Serve the version of this bundle id (or a unique prefix) instead of the alias."),
    workspace: Path = typer.Option(Path(".champion"), help="The workspace of `champion run` (its sqlite MLflow and weights cache)."),
    registered_model_name: str = typer.Option("champion-qa", help="MLflow registered model that holds the bundles."),
    weights_cache: Optional[Path] = typer.Option(None, envvar="CHAMPION_WEIGHTS_CACHE", help="Cache of converted/fetched weights."),
    host: str = typer.Option("127.0.0.1", help="Interface to listen on (loopback by default: the server has no authentication)."),
    port: int = typer.Option(8080, help="Port of the OpenAI-compatible route; the predictor takes PORT+1."),
) -> None:
    """Serve a promoted bundle locally: KServe model servers for the prompt transformer and a CPU predictor."""
    _serve(workspace, registered_model_name, "" if bundle else alias, bundle, weights_cache, host, port)


@app.command()
def manifests(
    namespace: str = typer.Option(..., help="Namespace the pipeline deploys into."),
    output: Path = typer.Option(Path("k8s"), help="Folder for the YAML files."),
    service_account: str = typer.Option("pipeline-runner", help="Service account the pipeline's pods run as."),
) -> None:
    """Write what a cluster needs once per namespace: the vLLM ServingRuntime and the deploy step's RBAC."""
    import yaml

    from serving.manifests import render_rbac, render_serving_runtime, validate_strict

    runtime = render_serving_runtime(namespace)
    validate_strict(runtime)
    output.mkdir(parents=True, exist_ok=True)
    (output / "servingruntime-vllm.yaml").write_text(yaml.safe_dump(runtime, sort_keys=False))
    (output / "rbac.yaml").write_text(yaml.safe_dump_all(render_rbac(namespace, service_account=service_account), sort_keys=False))
    for name in ("servingruntime-vllm.yaml", "rbac.yaml"):
        typer.echo(str(output / name))


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
    table.add_row("MLflow", f"{summary['registered_model']} v{summary['model_version']}" + (", alias champion moved here" if summary["promoted"] else ", alias unchanged"))
    table.add_row("deployment", {"promoted": "InferenceService rendered and validated", "rolled_back": "[red]rolled back[/]"}.get(summary["deployment"], "skipped"))
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
