"""The ``champion`` command line: one module per group of commands, registered here in the order
``champion --help`` lists them.

champion run                 evaluate, gate and (if it passes) promote the demo bundle, locally
champion run --prompt qa-oneline --limit 10 --json
champion serve                 serve the champion bundle on 127.0.0.1:8080 (OpenAI-compatible chat)
champion manifests --namespace team-a --output k8s    the runtime and RBAC to apply once per namespace
champion compile --output dist
champion lint / champion lock          check prompts against prompts/prompts.lock / record new versions
champion sync-prompts                  register every prompt version in MLflow's prompt registry
champion monitor                       the scheduled evaluation of the live champion, locally
champion upload / schedule / trigger   Kubeflow: upload pipelines, schedule evaluation, CI runs on prompt changes
champion plan                          the examples a policy's margins need, fixed-n and with sequential looks

Commands raise ``ChampionError``; ``pipelines.cli.app.ChampionGroup`` reports it once for all of them.
A command imports what it runs (kfp, MLflow, the steps, the serving stack) inside its body: that keeps
``champion --help`` and a mistyped option at 0.4 s instead of 3 s.
"""

from typing import Any

import typer

from pipelines.cli import cluster, local_runs, policy, prompt_files, serving
from pipelines.cli.app import app
from pipelines.cli.labels import labels_app
from pipelines.cli.policy import policy_app

app.command()(local_runs.run)
app.command()(serving.serve)
app.command()(serving.manifests)
app.command()(serving.replay)
app.command("compile")(cluster.compile_command)
app.command()(prompt_files.lint)
app.command()(prompt_files.lock)
app.command("sync-prompts")(prompt_files.sync_prompts_command)
app.command()(local_runs.monitor)
app.command()(cluster.upload)
app.command()(cluster.schedule)
app.command()(cluster.trigger)
app.command()(policy.plan)
app.add_typer(labels_app, name="labels")
app.add_typer(policy_app, name="policy")


def commands() -> list[tuple[str, Any]]:
    """Every command as (``"policy check"``-style title, click command), subcommands of groups included: what the
    docs' CLI reference lists. Typer 0.29 carries its own copy of click, so a group is what has ``commands``."""

    def walk(group: Any, prefix: str) -> list[tuple[str, Any]]:
        found: list[tuple[str, Any]] = []
        for name, command in getattr(group, "commands", {}).items():
            found += walk(command, f"{prefix}{name} ") if hasattr(command, "commands") else [(prefix + name, command)]
        return found

    return walk(typer.main.get_command(app), "")


__all__ = ["app", "commands"]
