"""The ``champion`` command line.

champion run                 evaluate, gate and (if it passes) promote the demo bundle, locally
champion run --prompt qa-oneline --limit 10 --json
champion serve                 serve the champion bundle on 127.0.0.1:8080 (OpenAI-compatible chat)
champion manifests --namespace team-a --output k8s    the runtime and RBAC to apply once per namespace
champion compile --output dist
champion lint / champion lock          check prompts against prompts/prompts.lock / record new versions
champion sync-prompts                  register every prompt version in MLflow's prompt registry
champion monitor                       the scheduled evaluation of the live champion, locally
champion upload / schedule / trigger   Kubeflow: upload pipelines, schedule evaluation, CI runs on prompt changes
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from champion.errors import ChampionError, ConfigError
from champion.parameters import DEFAULT_REGISTERED_MODEL, PromotionParameters, ScheduledEvalParameters
from pipelines.containers import Runner

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Evaluation-gated promotion of LLM model+prompt bundles on Kubeflow Pipelines.",
)
err = Console(stderr=True, soft_wrap=True)


def _fail(exc: ChampionError, code: int = 2) -> None:
    """Every command reports a champion error the same way: the problem, the fix, exit status 2
    (130/143 when the command was stopped by SIGINT/SIGTERM)."""
    from champion.interrupt import Interrupted

    if isinstance(exc, Interrupted):
        err.print(f"[bold yellow]stopped:[/] {exc.problem}")
        err.print(f"[bold]next:[/] {exc.fix}")
        raise typer.Exit(exc.exit_code) from None
    err.print(f"[bold red]error:[/] {exc.problem}")
    if exc.fix:
        err.print(f"[bold]fix:[/] {exc.fix}")
    raise typer.Exit(code) from None


def option(
    name: str, model: type = PromotionParameters, command: str = "run", *, flag: str | None = None, **extra: Any
) -> Any:
    """The option of ``champion <command>`` for a pipeline parameter: its name, default and help come from the parameter model."""
    from champion.parameters import cli_flag, default, help_text

    declared = flag or cli_flag(model, name, command)
    assert declared, f"{name} has no {command} option in champion/parameters.py"
    return typer.Option(default(model, name), declared, help=help_text(model, name), **extra)


STEP_TITLES = {
    "pin-inputs-op": "Pin the inputs",
    "plan-bundles-op": "Plan the bundles to score",
    "preprocess-data-op": "Preprocess evaluation set",
    "fetch-weights-op": "Fetch weights",
    "fine-tune-op": "Fine-tune (LoRA)",
    "resolve-champion-op": "Resolve the champion",
    "batch-generate-op": "Generate answers",
    "evaluate-op": "Score answers",
    "check-judge-op": "Check the judge",
    "drift-op": "Drift report",
    "gate-op": "Gate",
    "register-op": "Register in MLflow",
    "deploy-op": "Deploy and move the champion alias",
    "skip-deploy-op": "Skip deployment",
    "monitor-op": "Compare with the previous evaluation",
    "no-champion-op": "No champion to evaluate",
}


def _progress(status) -> Callable[[str, str], None]:
    """Print each step's state as the run reports it (champion.pipelines.local.StepTracker)."""

    def on_event(task: str, state: str) -> None:
        base, _, index = task.partition("[")  # scoring-loop steps carry their bundle's index: fetch-weights-op[1]
        title = STEP_TITLES.get(base, task) + (f" (bundle {int(index.rstrip(']')) + 1})" if index else "")
        if state == "running":
            status.update(f"{title}…")
        elif state == "succeeded":
            err.print(f"[green]✓[/] {title}")
        elif state == "cached":
            err.print(f"[green]✓[/] {title} [dim](step cache)[/]")
        else:
            err.print(f"[red]✗[/] {title} ({state})")

    return on_event


def _parameters(model: type, given: dict, param: list[str]) -> Any:
    """The parameter model from the command's options and its --param NAME=VALUE pairs (unknown names: did-you-mean)."""
    from champion.parameters import parse

    extra = _decode_structured(model, _params(param))
    both = sorted(set(extra) & set(given))
    if both:
        _fail(ConfigError(f"{', '.join(both)} given both as an option and as --param.", "give each parameter once."))
    try:
        return parse(model, {**given, **extra})
    except ChampionError as exc:
        _fail(exc)


RUNNER_OPTION = typer.Option(
    "subprocess",
    "--runner",
    help="Where the steps run: subprocess (this virtual environment) or docker (containers of the champion "
    "image built by `make images`, as uid 1000, with no network).",
)


@app.command()
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
        [], help="Any other pipeline parameter, NAME=VALUE (repeatable; see the README's parameter table)."
    ),
    workspace: Path = typer.Option(Path(".champion"), help="Where runs, the caches, logs and the sqlite MLflow live."),
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
    params = _parameters(PromotionParameters, given, param)
    settings = LocalSettings(workspace=workspace, weights_cache=weights_cache, use_cache=use_cache, runner=runner)
    try:
        with err.status("Starting the local pipeline…") as status:
            summary = run_promotion(params, settings, _progress(status))
    except ChampionError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    else:
        _print_summary(summary)
    if fail_on_reject and (summary["decision"] == "rejected" or (params.promote and summary["decision"] != "promoted")):
        raise typer.Exit(1)
    if serve_after:
        if not summary["promoted"]:
            err.print("[yellow]not serving:[/] the bundle was not promoted.")
            raise typer.Exit(1 if fail_on_reject else 0)
        _serve(workspace, params.registered_model_name, "", summary["bundle_id"], weights_cache, "127.0.0.1", port)


def _serve(
    workspace: Path,
    registered_model_name: str,
    alias: str,
    bundle_id: str,
    weights_cache: Optional[Path],
    host: str,
    port: int,
    request_log: Optional[Path] = None,
    log_content: bool = False,
) -> None:
    from champion.interrupt import stop_on_signals

    try:
        with stop_on_signals():  # SIGTERM/SIGINT stop the predictor child too, then exit 143/130
            _serve_until_stopped(
                workspace, registered_model_name, alias, bundle_id, weights_cache, host, port, request_log, log_content
            )
    except ChampionError as exc:
        _fail(exc)


def _serve_until_stopped(
    workspace: Path,
    registered_model_name: str,
    alias: str,
    bundle_id: str,
    weights_cache: Optional[Path],
    host: str,
    port: int,
    request_log: Optional[Path] = None,
    log_content: bool = False,
) -> None:
    from pipelines.local import OFFLINE_ENV, Workspace
    from pipelines.serve import prepare, serve_bundle
    from serving.request_log import RequestLog

    os.environ.update(OFFLINE_ENV)
    space = Workspace(workspace.resolve())
    if not (space.root / "mlflow.db").is_file():
        from champion.errors import RegistryError

        _fail(
            RegistryError(
                f"no MLflow registry in {space.root}.",
                "run `champion run` first (with the same --workspace) so a bundle is promoted.",
            )
        )
    try:
        from pipelines.serve import ensure_port_free

        ensure_port_free(host, port)
        ensure_port_free(host, port + 1)
        with err.status("Fetching the bundle's weights and prompt…"):
            served = prepare(
                space.mlflow_uri,
                registered_model_name,
                alias=alias,
                bundle_id=bundle_id,
                weights_cache=weights_cache or os.environ.get("CHAMPION_WEIGHTS_CACHE") or space.weights_cache,
                work_dir=space.root / "serve",
            )
        err.print(
            f"[green]✓[/] bundle {served.bundle.id[:16]}… ({served.prompt.name}@{served.prompt.version}), {registered_model_name} version {served.version}"
        )
        err.print(f"Serving on http://{host}:{port}/openai/v1/chat/completions (model {served.name!r}); Ctrl-C stops.")
        err.print(
            f'  curl -s http://{host}:{port}/openai/v1/chat/completions -H \'content-type: application/json\' -d \'{{"model": "{served.name}", "messages": [{{"role": "user", "content": "What is the capital of France?"}}]}}\''
        )
        log_path = request_log or space.root / "requests.jsonl"
        log = RequestLog(log_path, capture_content=log_content)
        err.print(
            f"Request log: {log_path}" + (" (with questions and answers, secrets redacted)" if log_content else "")
        )
        serve_bundle(served, host=host, port=port, log_dir=space.logs, request_log=log)
    except ChampionError as exc:
        _fail(exc)


@app.command()
def serve(
    alias: str = typer.Option("champion", help="Serve the version with this MLflow alias."),
    bundle: str = typer.Option(
        "", help="Serve the version of this bundle id (or a unique prefix) instead of the alias."
    ),
    workspace: Path = typer.Option(
        Path(".champion"), help="The workspace of `champion run` (its sqlite MLflow and weights cache)."
    ),
    registered_model_name: str = typer.Option(
        DEFAULT_REGISTERED_MODEL, help="MLflow registered model that holds the bundles."
    ),
    weights_cache: Optional[Path] = typer.Option(
        None, envvar="CHAMPION_WEIGHTS_CACHE", help="Cache of converted/fetched weights."
    ),
    host: str = typer.Option(
        "127.0.0.1", help="Interface to listen on (loopback by default: the server has no authentication)."
    ),
    port: int = typer.Option(8080, help="Port of the OpenAI-compatible route; the predictor takes PORT+1."),
    request_log: Optional[Path] = typer.Option(
        None, help="JSONL file for one record per request (default: WORKSPACE/requests.jsonl)."
    ),
    log_content: bool = typer.Option(
        False, "--log-content", help="Also record questions and answers (secrets redacted; for replay and review)."
    ),
) -> None:
    """Serve a promoted bundle locally: KServe model servers for the prompt transformer and a CPU predictor."""
    _serve(
        workspace,
        registered_model_name,
        "" if bundle else alias,
        bundle,
        weights_cache,
        host,
        port,
        request_log,
        log_content,
    )


@app.command()
def manifests(
    namespace: str = typer.Option(..., help="Namespace the pipeline deploys into."),
    output: Path = typer.Option(Path("k8s"), help="Folder for the YAML files."),
    service_account: str = typer.Option("pipeline-runner", help="Service account the pipeline's pods run as."),
    serving_api: str = typer.Option(
        "inferenceservice", help="The serving_api the pipeline deploys with: inferenceservice or llminferenceservice."
    ),
    shadow: bool = typer.Option(
        False,
        help="The pipeline runs a shadow stage (shadow_requests > 0): on InferenceServices it needs Istio VirtualServices.",
    ),
    trainjob: bool = typer.Option(False, help="The pipeline fine-tunes with trainer=trainjob (Kubeflow Trainer v2)."),
) -> None:
    """Write what a cluster needs once per namespace: the vLLM ServingRuntime, the deploy step's RBAC, and the
    monitoring: Prometheus alert rules (a PrometheusRule and a plain rule file) and a Grafana dashboard."""
    import yaml

    from champion.inputs import check_folder
    from serving.manifests import render_rbac, render_serving_runtime, validate_strict

    try:
        check_folder(output, "output folder", must_exist=False)
        runtime = render_serving_runtime(namespace)
        validate_strict(runtime)
        rbac = render_rbac(
            namespace, service_account=service_account, serving_api=serving_api, shadow=shadow, trainjob=trainjob
        )
    except ChampionError as exc:
        _fail(exc)
    from serving.observability import alert_rules, render_grafana_dashboard, render_prometheus_rule

    output.mkdir(parents=True, exist_ok=True)
    (output / "servingruntime-vllm.yaml").write_text(yaml.safe_dump(runtime, sort_keys=False))
    (output / "rbac.yaml").write_text(yaml.safe_dump_all(rbac, sort_keys=False))
    # Monitoring: the alerts as a PrometheusRule (prometheus-operator) and as a plain rule file, the dashboard.
    (output / "prometheusrule.yaml").write_text(yaml.safe_dump(render_prometheus_rule(namespace), sort_keys=False))
    (output / "champion-rules.yml").write_text(yaml.safe_dump({"groups": alert_rules()}, sort_keys=False))
    (output / "grafana-dashboard.json").write_text(json.dumps(render_grafana_dashboard(), indent=2) + "\n")
    for name in (
        "servingruntime-vllm.yaml",
        "rbac.yaml",
        "prometheusrule.yaml",
        "champion-rules.yml",
        "grafana-dashboard.json",
    ):
        typer.echo(str(output / name))


def _print_summary(summary: dict) -> None:
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
    champion = summary["champion"]
    table.add_row(
        "compared with",
        f"champion version {champion['version']} (bundle {champion['bundle_id'][:12]}…)"
        if champion
        else "no champion yet: bootstrap rule (absolute floors only)",
    )
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
    judge = summary.get("judge")
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
    out.print(table)
    out.print("[bold]Why:[/] " + "; ".join(summary["reasons"]))
    out.print("[bold]Reports:[/]")
    for name, path in summary["reports"].items():
        if path:
            out.print(f"  {name:<14} {path}")
    out.print(f"  {'mlflow':<14} {summary['mlflow_tracking_uri']}")


@app.command()
def replay(
    log: Path = typer.Argument(..., help="A request log with content (`champion serve --log-content`)."),
    bundle: str = typer.Option(..., help="The candidate's bundle id (or a prefix): the server at --url must serve it."),
    url: str = typer.Option("http://127.0.0.1:8080", help="Where the candidate is served (`champion serve --bundle`)."),
    evaluator_config: str = typer.Option("default", help="Evaluator config whose judge compares the pairs."),
    limit: int = typer.Option(
        0, help="Replay at most this many distinct logged questions (0: all), sampled with a seed."
    ),
    margin: float = typer.Option(
        0.1, help="Non-inferiority margin on the judge's preference (candidate - live, in [-1, 1])."
    ),
    min_examples: int = typer.Option(20, help="Fewer replayed pairs than this: not promoted."),
    workspace: Path = typer.Option(Path(".champion"), help="Workspace whose cache keeps the judge's verdicts."),
    output: Optional[Path] = typer.Option(None, help="Where to write the shadow decision (JSON)."),
) -> None:
    """The shadow gate locally: replay logged requests to a candidate, judge each answer against the logged live
    one (reference-free, both orders), and decide with the gate's engine. Exit 0 passed, 1 not passed."""
    import json

    from champion.cache import ExampleCache
    from champion.errors import ConfigError, DataError
    from champion.request_records import read_request_log, replayable
    from evaluators.config import load_evaluator_config
    from evaluators.evaluate import build_judge, judge_reliability
    from serving.shadow import replay as replay_requests
    from serving.shadow import shadow_gate

    try:
        records = [r for r in replayable(read_request_log(log), limit=limit) if not r.bundle_id.startswith(bundle)]
        if not records:
            raise DataError(
                f"{log} holds no answered request with its question and answer (other than the candidate's own).",
                "log the live bundle with content capture: `champion serve --log-content` (or CHAMPION_LOG_CONTENT=true).",
            )
        config = load_evaluator_config(evaluator_config)
        if config.judge is None:
            raise ConfigError(f"evaluator config {evaluator_config!r} has no judge.", "use one with a 'judge' section.")
        pairs = replay_requests(records, url, expected_bundle=bundle)
        cache = ExampleCache(workspace / "cache" / "examples")
        judge = build_judge(config.judge, cache=cache)
        decision = shadow_gate(
            pairs, judge, judge_reliability(config, judge=judge), margin=margin, min_examples=min_examples
        )
    except ChampionError as exc:
        _fail(exc)
    target = output or workspace / "reports" / f"shadow-{bundle[:12]}.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(decision, indent=2, sort_keys=True), encoding="utf-8")
    word = "[green]PASSED[/]" if decision["passed"] else "[red]NOT PASSED[/]"
    Console(soft_wrap=True).print(
        f"shadow gate {word}: {decision['n']} replayed requests; candidate better on {decision['candidate_wins']}, "
        f"live better on {decision['live_wins']}, ties {decision['ties']}\n[bold]Why:[/] "
        + "; ".join(decision["reasons"])
        + f"\n[bold]Decision:[/] {target}"
    )
    raise typer.Exit(0 if decision["passed"] else 1)


labels_app = typer.Typer(no_args_is_help=True, help="Labelled sets: the judge's agreement with people.")
app.add_typer(labels_app, name="labels")


@labels_app.command("export")
def labels_export(
    report: Path = typer.Argument(..., help="A gate report (gate_report.html) of a run with a champion."),
    output: Path = typer.Option(..., help="JSONL file to write (a labelled set with 'human' empty)."),
) -> None:
    """Write a gate report's example pairs for review; filled in, the file is a labelled set for the judge check."""
    from champion.inputs import read_text
    from champion.jsonl import write_jsonl
    from evaluators.reliability import review_items_from_report

    try:
        items = review_items_from_report(read_text(report, "gate report"))
    except ChampionError as exc:
        _fail(exc)
    if not items:
        _fail(
            ChampionError(
                f"{report} holds no example pairs (a first run, with no champion, has nothing to compare).",
                "export the report of a run that compared a challenger with a champion.",
            )
        )
    write_jsonl(items, output)
    typer.echo(f"{len(items)} pairs written to {output}: fill in 'human' (A = champion, B = challenger, or tie)")


policy_app = typer.Typer(
    no_args_is_help=True, help="Gate policies: check one against the evaluator config before any model loads."
)
app.add_typer(policy_app, name="policy")


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

    try:
        loaded = load_policy(policy)
        catalog = load_evaluator_config(evaluators).metric_catalog()
    except ChampionError as exc:
        _fail(exc)
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


@app.command("compile")
def compile_command(
    output: Path = typer.Option(Path("dist"), help="Folder for pipelines/<name>.yaml and components/<name>.yaml."),
    cpu_image: Optional[str] = typer.Option(
        None, envvar="CHAMPION_CPU_IMAGE", help="Image for CPU steps (prefer repo@sha256:…)."
    ),
    gpu_image: Optional[str] = typer.Option(
        None, envvar="CHAMPION_GPU_IMAGE", help="Image for GPU steps (prefer repo@sha256:…)."
    ),
    weights_pvc: Optional[str] = typer.Option(
        None,
        envvar="CHAMPION_WEIGHTS_PVC",
        help="PersistentVolumeClaim that caches weights between runs (mounted on the weight steps).",
    ),
    kueue_queue: Optional[str] = typer.Option(
        None,
        envvar="CHAMPION_KUEUE_QUEUE",
        help="Kueue LocalQueue for the GPU steps (labels their pods kueue.x-k8s.io/queue-name).",
    ),
    otlp_endpoint: Optional[str] = typer.Option(
        None,
        envvar="CHAMPION_OTLP_ENDPOINT",
        help="OpenTelemetry collector (OTLP/HTTP base URL) the steps send their spans to; none: no spans leave a step.",
    ),
) -> None:
    """Compile every pipeline and component to IR YAML, byte-identical from run to run, and load each back.
    Images default to images/refs.env (by digest when its *_DIGEST lines are set)."""
    from pipelines.compile import compile_all

    try:
        written = compile_all(
            output,
            cpu_image=cpu_image,
            gpu_image=gpu_image,
            weights_pvc=weights_pvc,
            kueue_queue=kueue_queue,
            otlp_endpoint=otlp_endpoint,
        )
    except ChampionError as exc:
        _fail(exc)
    for path in written:
        typer.echo(str(path))


def _params(values: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs, as given; the parameter model converts and checks them."""
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            _fail(
                ConfigError(
                    f"--param {item!r} is not NAME=VALUE.", "e.g. --param mlflow_tracking_uri=http://mlflow.mlflow:5000"
                )
            )
        params[key] = value
    return params


def _typed_params(model: type, values: list[str]) -> dict[str, Any]:
    """--param pairs checked against the parameter model (unknown names: did-you-mean), typed: what a
    Kubeflow run is submitted with."""
    from champion.parameters import parse

    given = _params(values)
    try:
        checked = parse(model, _decode_structured(model, given))
    except ChampionError as exc:
        _fail(exc)
    return checked.model_dump(include=set(given))


def _decode_structured(model: type, values: dict[str, Any]) -> dict[str, Any]:
    """JSON for the dict and list parameters (node selector, tolerations); the model converts the rest."""
    from champion.parameters import kfp_type

    decoded = dict(values)
    for key, value in values.items():
        if (
            key in model.model_fields
            and kfp_type(model.model_fields[key].annotation) in (dict, list)
            and isinstance(value, str)
        ):
            try:
                decoded[key] = json.loads(value)
            except ValueError:
                _fail(ConfigError(f"--param {key} must be JSON, got {value!r}.", f"e.g. --param {key}='{{}}'"))
    return decoded


PROMPTS_OPTION = typer.Option(None, help="Prompt folder (default: the installed prompts/).")


@app.command()
def lint(prompts_dir: Optional[Path] = PROMPTS_OPTION) -> None:
    """Check every prompt: it parses, renders in the sandbox, and matches prompts/prompts.lock."""
    from prompts.lock import lint as lint_prompts

    try:
        problems = lint_prompts(prompts_dir) if prompts_dir else lint_prompts()
    except ChampionError as exc:
        _fail(exc)
    for problem in problems:
        err.print(f"[red]✗[/] {problem.where}: {problem.problem}\n  [bold]fix:[/] {problem.fix}")
    if problems:
        raise typer.Exit(1)
    err.print("[green]✓[/] every prompt parses and matches prompts.lock")


@app.command()
def lock(prompts_dir: Optional[Path] = PROMPTS_OPTION) -> None:
    """Record the digest of every prompt version in prompts/prompts.lock (refuses to re-lock a changed version)."""
    from prompts.lock import LOCK_NAME, write_lock

    try:
        digests = write_lock(prompts_dir) if prompts_dir else write_lock()
    except ChampionError as exc:
        _fail(exc)
    err.print(f"[green]✓[/] {len(digests)} prompt versions in {LOCK_NAME}")


@app.command("sync-prompts")
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
    from prompts.loader import PROMPTS_DIR
    from prompts.lock import load_file, prompt_files
    from registry.registry import sync_prompts

    root = prompts_dir or PROMPTS_DIR
    try:
        prompts = [
            load_file(ref, path, root) for ref, path in prompt_files(root).items() if not ref.startswith("judges/")
        ]
        synced = sync_prompts(tracking_uri, registered_model_name, prompts)
    except ChampionError as exc:
        _fail(exc)
    for ref, version in synced.items():
        typer.echo(f"{ref} -> prompts:/{ref.split('@')[0]}/{version}")


@app.command()
def monitor(
    data: str = option("data_source", ScheduledEvalParameters, "monitor"),
    gate_config: str = option("gate_config", ScheduledEvalParameters, "monitor"),
    evaluator_config: str = option("evaluator_config", ScheduledEvalParameters, "monitor"),
    limit: int = option("limit", ScheduledEvalParameters, "monitor"),
    webhook_url: str = option("webhook_url", ScheduledEvalParameters, "monitor", envvar="CHAMPION_WEBHOOK_URL"),
    param: list[str] = typer.Option(
        [], help="Any other parameter of the scheduled evaluation, NAME=VALUE (repeatable)."
    ),
    workspace: Path = typer.Option(Path(".champion"), help="The workspace of `champion run`."),
    weights_cache: Optional[Path] = typer.Option(
        None, envvar="CHAMPION_WEIGHTS_CACHE", help="Cache of converted/fetched weights."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
    runner: Runner = RUNNER_OPTION,
) -> None:
    """Run the scheduled evaluation of the live champion locally; exit 1 on an alert. Never promotes."""
    from pipelines.local import LocalSettings, run_scheduled_eval

    try:
        with err.status("Evaluating the live champion…"):
            params = _parameters(
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
    except ChampionError as exc:
        _fail(exc)
    if as_json:
        sys.stdout.write(json.dumps(result, indent=2, sort_keys=True) + "\n")
    else:
        mark = "[green]healthy[/]" if result["status"] == "healthy" else "[red]ALERT[/]"
        Console().print(f"champion version {result['champion_version']}: {mark}")
        for reason in result["failed_checks"]:
            Console().print(f"  [red]✗[/] {reason}")
    if result["status"] != "healthy":
        raise typer.Exit(1)


HOST_OPTION = typer.Option(
    "",
    envvar="KFP_HOST",
    help="Kubeflow Pipelines API endpoint, e.g. https://kubeflow.example.com/pipeline (default: in-cluster or kubeconfig).",
)
NAMESPACE_OPTION = typer.Option("", envvar="KFP_NAMESPACE", help="Profile namespace of a multi-user Kubeflow.")
TOKEN_ENV_OPTION = typer.Option(
    "KFP_TOKEN", help="Environment variable holding the bearer token (never pass a token on the command line)."
)


def _kubeflow(host: str, namespace: str, token_env: str):
    from pipelines.kubeflow import Connection, connect

    try:
        return connect(Connection(host=host, namespace=namespace, token_env=token_env))
    except ChampionError as exc:
        _fail(exc)


def _compiled(package_dir: Optional[Path]) -> Path:
    import tempfile

    from pipelines.compile import compile_all

    if package_dir:
        return package_dir
    target = Path(tempfile.mkdtemp(prefix="champion-compiled-"))
    compile_all(target)
    return target


@app.command()
def upload(
    host: str = HOST_OPTION,
    namespace: str = NAMESPACE_OPTION,
    token_env: str = TOKEN_ENV_OPTION,
    package_dir: Optional[Path] = typer.Option(None, help="Folder from `champion compile` (default: compile now)."),
) -> None:
    """Upload every compiled pipeline: a new pipeline the first time, then a version named vPROJECT-COMMIT-pPROMPTS."""
    from importlib.metadata import version as installed_version

    from pipelines.kubeflow import git_commit, prompts_hash, version_name
    from pipelines.kubeflow import upload as upload_package

    client = _kubeflow(host, namespace, token_env)
    name = version_name(installed_version("champion"), git_commit(), prompts_hash())
    try:
        for package in sorted((_compiled(package_dir) / "pipelines").glob("*.yaml")):
            uploaded = upload_package(client, package, name, namespace=namespace, description=f"champion {name}")
            what = ("new pipeline, " if uploaded.created_pipeline else "") + (
                "new version" if uploaded.created_version else "version already uploaded"
            )
            typer.echo(f"{uploaded.pipeline} {uploaded.version} ({what}): {uploaded.link}")
    except ChampionError as exc:
        _fail(exc)


@app.command()
def schedule(
    cron: str = typer.Option(..., help="6-field cron (seconds first), e.g. '0 0 6 * * *' for 06:00 daily."),
    name: str = typer.Option(
        "champion-scheduled-eval", help="Recurring run name; scheduling the same name again replaces it."
    ),
    max_concurrency: int = typer.Option(1, help="How many of its runs may overlap."),
    experiment: str = typer.Option("champion-monitoring", help="Kubeflow experiment for the runs."),
    param: list[str] = typer.Option(
        [], help="Pipeline parameter KEY=VALUE (repeatable): mlflow_tracking_uri, data_source, webhook_url, …"
    ),
    host: str = HOST_OPTION,
    namespace: str = NAMESPACE_OPTION,
    token_env: str = TOKEN_ENV_OPTION,
) -> None:
    """Create or update the recurring scheduled evaluation of the live champion (no catch-up)."""
    from pipelines.kubeflow import schedule as schedule_run
    from pipelines.scheduled_eval import PIPELINE_NAME

    params = _typed_params(ScheduledEvalParameters, param)
    client = _kubeflow(host, namespace, token_env)
    try:
        scheduled = schedule_run(
            client,
            name=name,
            pipeline_name=PIPELINE_NAME,
            cron=cron,
            params=params,
            experiment=experiment,
            namespace=namespace,
            max_concurrency=max_concurrency,
        )
    except ChampionError as exc:
        _fail(exc)
    action = f"replaced {len(scheduled.replaced)} earlier" if scheduled.replaced else "created"
    typer.echo(
        f"{scheduled.name}: {action}; cron {cron!r}, pipeline version {scheduled.pipeline_version}, recurring run {scheduled.recurring_run_id}"
    )


@app.command()
def trigger(
    changed_since: str = typer.Option(..., help="Git ref to compare with, e.g. origin/main."),
    repo: Path = typer.Option(Path("."), help="The repository holding prompts/."),
    local: bool = typer.Option(False, "--local", help="Run each promotion here (kfp.local) instead of on Kubeflow."),
    promote: bool = typer.Option(
        False,
        help="Let a passing bundle be deployed and become the champion (default: gate only, as a PR check should).",
    ),
    summary: Optional[Path] = typer.Option(
        None, envvar="GITHUB_STEP_SUMMARY", help="Append the Markdown summary here (GitHub sets GITHUB_STEP_SUMMARY)."
    ),
    param: list[str] = typer.Option([], help="Pipeline parameter KEY=VALUE for every run (repeatable)."),
    timeout: int = typer.Option(3600, help="Seconds to wait for each Kubeflow run."),
    workspace: Path = typer.Option(Path(".champion"), help="--local: the workspace."),
    limit: int = typer.Option(0, help="--local: evaluate only the first N examples."),
    gate_config: str = typer.Option("default", help="--local: the gate policy."),
    host: str = HOST_OPTION,
    namespace: str = NAMESPACE_OPTION,
    token_env: str = TOKEN_ENV_OPTION,
) -> None:
    """Lint prompts, then start one promotion run per bundle changed since a git ref; exit 1 if any gate rejects."""
    from pipelines.trigger import changed_bundles, summary_markdown
    from prompts.lock import lint as lint_prompts
    from prompts.lock import load_file

    params = _typed_params(PromotionParameters, param)
    try:
        bundles = changed_bundles(repo, changed_since)
    except ChampionError as exc:
        _fail(exc)
    problems = [str(p) for p in lint_prompts(repo.resolve() / "prompts")]
    rows = []
    if not problems:
        client = None if local or not bundles else _kubeflow(host, namespace, token_env)
        package = None if local or not bundles else _compiled(None) / "pipelines" / "promotion.yaml"
        for bundle in bundles:
            err.print(f"evaluating [bold]{bundle.prompt}[/] with {bundle.model} ({bundle.reason})")
            row = {"prompt": bundle.prompt, "model": bundle.model}
            try:
                if local:
                    from champion.parameters import parse
                    from pipelines.local import LocalSettings, run_promotion

                    given = {
                        **params,
                        "prompt": str(bundle.path),
                        "model_source": bundle.model,
                        "limit": limit,
                        "gate_config": gate_config,
                        "promote": promote,
                    }
                    result = run_promotion(parse(PromotionParameters, given), LocalSettings(workspace=workspace))
                    row.update(
                        passed=result["gate"] == "passed",
                        result=result["decision"],
                        details="; ".join(result["reasons"]),
                    )
                else:
                    from champion.parameters import DEFAULT_REGISTERED_MODEL
                    from pipelines.kubeflow import git_commit, record_watched_run, submit_and_wait
                    from pipelines.promotion import PIPELINE_NAME
                    from registry.run_metrics import ExportError

                    prompt = load_file(bundle.prompt, bundle.path, repo.resolve() / "prompts")
                    arguments = {
                        **params,
                        "prompt": prompt.model_dump_json(),
                        "model_source": bundle.model,
                        "promote": promote,
                        "fail_on_reject": True,
                    }
                    run_name = f"ci-{bundle.prompt.replace('@', '-v')}-{git_commit(repo)}"
                    result = submit_and_wait(
                        client,
                        package,
                        run_name=run_name,
                        arguments=arguments,
                        experiment="champion-ci",
                        namespace=namespace,
                        timeout_s=timeout,
                    )
                    row.update(
                        passed=result.succeeded,
                        result=result.state.lower(),
                        details=result.message or ("gate passed" if result.succeeded else ""),
                        link=result.link,
                    )
                    try:
                        record_watched_run(
                            result,
                            pipeline=PIPELINE_NAME,
                            model=arguments.get("registered_model_name") or DEFAULT_REGISTERED_MODEL,
                            pushgateway_url=arguments.get("pushgateway_url") or "",
                        )
                    except ExportError as exc:  # the run's outcome stands; its step metrics are missing
                        err.print(f"[yellow]warning:[/] {exc}")
            except ChampionError as exc:
                row.update(passed=False, result="error", details=str(exc))
            rows.append(row)
    text = summary_markdown(changed_since, rows, problems)
    sys.stdout.write(text)
    if summary:
        with open(summary, "a", encoding="utf-8") as handle:
            handle.write(text)
    if problems:
        raise typer.Exit(2)
    if not all(row["passed"] for row in rows):
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
