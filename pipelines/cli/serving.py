"""``champion serve``, ``champion manifests`` and ``champion replay``: the promoted bundle served, its cluster objects, and a candidate judged on logged traffic."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from champion.errors import ConfigError, DataError, RegistryError
from champion.inputs import check_folder
from champion.interrupt import stop_on_signals
from champion.parameters import DEFAULT_REGISTERED_MODEL
from champion.request_records import read_request_log, replayable
from pipelines.cli.app import err, fail
from pipelines.cli.options import WORKSPACE_OPTION


def serve_locally(
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

    # SIGTERM/SIGINT stop the predictor child too, then exit 143/130 saying so (serving is not a run: no cache)
    with stop_on_signals(stopped="the server and its predictor were stopped."):
        _serve_until_stopped(
            workspace, registered_model_name, alias, bundle_id, weights_cache, host, port, request_log, log_content
        )


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
        fail(
            RegistryError(
                f"no MLflow registry in {space.root}.",
                "run `champion run` first (with the same --workspace) so a bundle is promoted.",
            )
        )
    from pipelines.serve import ensure_ports_free

    ensure_ports_free(host, port)
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
    err.print(f"Request log: {log_path}" + (" (with questions and answers, secrets redacted)" if log_content else ""))
    serve_bundle(served, host=host, port=port, log_dir=space.logs, request_log=log)


def serve(
    alias: str = typer.Option("champion", help="Serve the version with this MLflow alias."),
    bundle: str = typer.Option(
        "", help="Serve the version of this bundle id (or a unique prefix) instead of the alias."
    ),
    workspace: Path = WORKSPACE_OPTION,
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
    serve_locally(
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

    from serving.manifests import render_rbac, render_serving_runtime, validate_strict

    check_folder(output, "output folder", must_exist=False)
    runtime = render_serving_runtime(namespace)
    validate_strict(runtime)
    rbac = render_rbac(
        namespace, service_account=service_account, serving_api=serving_api, shadow=shadow, trainjob=trainjob
    )
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


def replay(
    log: Path = typer.Argument(
        ...,
        exists=True,
        dir_okay=False,
        readable=True,
        help="A request log with content (`champion serve --log-content`).",
    ),
    bundle: str = typer.Option(..., help="The candidate's bundle id (or a prefix): the server at --url must serve it."),
    url: str = typer.Option("http://127.0.0.1:8080", help="Where the candidate is served (`champion serve --bundle`)."),
    evaluator_config: str = typer.Option("default", help="Evaluator config whose judge compares the pairs."),
    limit: int = typer.Option(
        0, min=0, help="Replay at most this many distinct logged questions (0: all), sampled with a seed."
    ),
    margin: float = typer.Option(
        0.1, min=0.0, max=1.0, help="Non-inferiority margin on the judge's preference (candidate - live, in [-1, 1])."
    ),
    min_examples: int = typer.Option(20, min=1, help="Fewer replayed pairs than this: not promoted."),
    workspace: Path = WORKSPACE_OPTION,
    output: Optional[Path] = typer.Option(None, help="Where to write the shadow decision (JSON)."),
) -> None:
    """The shadow gate locally: replay logged requests to a candidate, judge each answer against the logged live
    one (reference-free, both orders), and decide with the gate's engine. Exit 0 passed, 1 not passed."""
    import json
    import os

    from champion.cache import ExampleCache
    from evaluators.config import load_evaluator_config
    from evaluators.evaluate import build_judge, judge_reliability
    from serving.shadow import replay as replay_requests
    from serving.shadow import shadow_gate

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
    # The judge's weights live in the workspace too (unless CHAMPION_WEIGHTS_CACHE says otherwise), like a run's.
    weights_cache = os.environ.get("CHAMPION_WEIGHTS_CACHE") or str(workspace / "cache" / "weights")
    judge = build_judge(config.judge, weights_cache=weights_cache, cache=cache)
    decision = shadow_gate(
        pairs, judge, judge_reliability(config, judge=judge), margin=margin, min_examples=min_examples
    )
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
