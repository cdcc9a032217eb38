"""``champion compile``, ``upload``, ``schedule`` and ``trigger``: the pipelines on Kubeflow."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from champion.errors import ChampionError
from champion.parameters import DEFAULT_REGISTERED_MODEL, PromotionParameters, ScheduledEvalParameters, parse
from pipelines.cli.app import err
from pipelines.cli.options import HOST_OPTION, NAMESPACE_OPTION, TOKEN_ENV_OPTION, WORKSPACE_OPTION, typed_params
from prompts.lock import lint as lint_prompts
from prompts.lock import load_file


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

    written = compile_all(
        output,
        cpu_image=cpu_image,
        gpu_image=gpu_image,
        weights_pvc=weights_pvc,
        kueue_queue=kueue_queue,
        otlp_endpoint=otlp_endpoint,
    )
    for path in written:
        typer.echo(str(path))


def kubeflow_client(host: str, namespace: str, token_env: str):
    from pipelines.kubeflow import Connection, connect

    return connect(Connection(host=host, namespace=namespace, token_env=token_env))


def compiled_package(package_dir: Optional[Path]) -> Path:
    import tempfile

    from pipelines.compile import compile_all

    if package_dir:
        return package_dir
    target = Path(tempfile.mkdtemp(prefix="champion-compiled-"))
    compile_all(target)
    return target


def upload(
    host: str = HOST_OPTION,
    namespace: str = NAMESPACE_OPTION,
    token_env: str = TOKEN_ENV_OPTION,
    package_dir: Optional[Path] = typer.Option(None, help="Folder from `champion compile` (default: compile now)."),
) -> None:
    """Upload every compiled pipeline: a new pipeline the first time, then a version named vPROJECT-COMMIT-pPROMPTS."""
    from importlib.metadata import version as installed_version

    from pipelines.kubeflow import name_commit, prompts_hash, version_name
    from pipelines.kubeflow import upload as upload_package

    client = kubeflow_client(host, namespace, token_env)
    name = version_name(installed_version("champion"), name_commit(), prompts_hash())
    for package in sorted((compiled_package(package_dir) / "pipelines").glob("*.yaml")):
        uploaded = upload_package(client, package, name, namespace=namespace, description=f"champion {name}")
        what = ("new pipeline, " if uploaded.created_pipeline else "") + (
            "new version" if uploaded.created_version else "version already uploaded"
        )
        typer.echo(f"{uploaded.pipeline} {uploaded.version} ({what}): {uploaded.link}")


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
    from pipelines.kubeflow import check_cron
    from pipelines.kubeflow import schedule as schedule_run
    from pipelines.scheduled_eval import PIPELINE_NAME

    check_cron(cron)
    params = typed_params(ScheduledEvalParameters, param)
    client = kubeflow_client(host, namespace, token_env)
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
    action = f"replaced {len(scheduled.replaced)} earlier" if scheduled.replaced else "created"
    typer.echo(
        f"{scheduled.name}: {action}; cron {cron!r}, pipeline version {scheduled.pipeline_version}, recurring run {scheduled.recurring_run_id}"
    )


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
    workspace: Path = WORKSPACE_OPTION,
    limit: int = typer.Option(0, help="--local: evaluate only the first N examples."),
    gate_config: str = typer.Option("default", help="--local: the gate policy."),
    host: str = HOST_OPTION,
    namespace: str = NAMESPACE_OPTION,
    token_env: str = TOKEN_ENV_OPTION,
) -> None:
    """Lint prompts, then start one promotion run per bundle changed since a git ref; exit 1 if any gate rejects."""
    from pipelines.trigger import changed_bundles, summary_markdown

    params = typed_params(PromotionParameters, param)
    bundles = changed_bundles(repo, changed_since)
    problems = [str(p) for p in lint_prompts(repo.resolve() / "prompts")]
    rows = []
    if not problems:
        client = None if local or not bundles else kubeflow_client(host, namespace, token_env)
        package = None if local or not bundles else compiled_package(None) / "pipelines" / "promotion.yaml"
        for bundle in bundles:
            err.print(f"evaluating [bold]{bundle.prompt}[/] with {bundle.model} ({bundle.reason})")
            row: dict[str, object] = {"prompt": bundle.prompt, "model": bundle.model}
            try:
                if local:
                    given = {**params, "limit": limit, "gate_config": gate_config}
                    row.update(_promote_here(bundle, given, workspace, promote))
                else:
                    row.update(_promote_on_kubeflow(bundle, params, repo, client, package, namespace, timeout, promote))
            except ChampionError as exc:  # one bundle's error is its row; the other bundles still run
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


def _promote_here(bundle, given: dict, workspace: Path, promote: bool) -> dict:
    """One changed bundle through the promotion pipeline on this machine; its row of the summary."""
    from pipelines.local import LocalSettings, run_promotion  # kfp.local loads only when a run starts

    given = {**given, "prompt": str(bundle.path), "model_source": bundle.model, "promote": promote}
    result = run_promotion(parse(PromotionParameters, given), LocalSettings(workspace=workspace))
    return dict(passed=result["gate"] == "passed", result=result["decision"], details="; ".join(result["reasons"]))


def _promote_on_kubeflow(
    bundle, params: dict, repo: Path, client, package, namespace: str, timeout: int, promote: bool
):
    """One changed bundle as Kubeflow runs, waited for: one run per look of a sequential gate (a look that does
    not decide ends in the look_again step, and the next look is the next run), one run otherwise. Its row of the
    summary (and each run's step metrics)."""
    from pipelines.kubeflow import name_commit, record_watched_run, submit_and_wait  # kfp's client, only when used
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
    first = look = int(arguments.get("look", 1))
    run_name = f"ci-{bundle.prompt.replace('@', '-v')}-{name_commit(repo)}"
    # The engine bounds the loop: a policy's last look decides (undecided there is "inconclusive"), and a look
    # past the last one fails its run.
    while True:
        result = submit_and_wait(
            client,
            package,
            run_name=run_name if look == first else f"{run_name}-look{look}",
            arguments=arguments | {"look": look},
            experiment="champion-ci",
            namespace=namespace,
            timeout_s=timeout,
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
        if not result.looks_again:
            break
        err.print(f"  look {look} did not decide: running look {look + 1}")
        look += 1
    # Fail closed: a run passes only where it is seen to reach its decision (deploy or skip_deploy) and succeed.
    passed = result.succeeded and result.decided
    looked = ""
    if look > first:
        looked = f" ({'decided' if result.decided else 'ended'} at look {look}, after {look - first} undecided)"
    details = result.message
    if not details and result.succeeded:
        details = (
            "gate passed"
            if passed
            else "the run succeeded without a deploy-op or skip-deploy-op task in its details, so no decision can be read"
        )
    return dict(passed=passed, result=result.state.lower(), details=details + looked, link=result.link)
