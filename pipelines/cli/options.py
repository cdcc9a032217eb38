"""Options more than one command shares, declared once; pipeline parameters come from the parameter models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from pydantic import BaseModel

from champion.errors import ConfigError
from champion.parameters import PromotionParameters, cli_flag, default, help_text, kfp_type, parse


def option(
    name: str,
    model: type[BaseModel] = PromotionParameters,
    command: str = "run",
    *,
    flag: str | None = None,
    **extra: Any,
) -> Any:
    """The option of ``champion <command>`` for a pipeline parameter: its name, default and help come from the parameter model."""

    declared = flag or cli_flag(model, name, command)
    assert declared, f"{name} has no {command} option in champion/parameters.py"
    return typer.Option(default(model, name), declared, help=help_text(model, name), **extra)


RUNNER_OPTION = typer.Option(
    "subprocess",
    "--runner",
    help="Where the steps run: subprocess (this virtual environment) or docker (containers of the champion "
    "image built by `make images`, as uid 1000, with no network).",
)


PROMPTS_OPTION = typer.Option(None, help="Prompt folder (default: the installed prompts/).")


HOST_OPTION = typer.Option(
    "",
    envvar="KFP_HOST",
    help="Kubeflow Pipelines API endpoint, e.g. https://kubeflow.example.com/pipeline (default: in-cluster or kubeconfig).",
)


NAMESPACE_OPTION = typer.Option("", envvar="KFP_NAMESPACE", help="Profile namespace of a multi-user Kubeflow.")


TOKEN_ENV_OPTION = typer.Option(
    "KFP_TOKEN", help="Environment variable holding the bearer token (never pass a token on the command line)."
)


def param_pairs(values: list[str]) -> dict[str, str]:
    """NAME=VALUE pairs, as given; the parameter model converts and checks them."""
    params = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(
                f"--param {item!r} is not NAME=VALUE.", "e.g. --param mlflow_tracking_uri=http://mlflow.mlflow:5000"
            )
        params[key] = value
    return params


def typed_params(model: type[BaseModel], values: list[str]) -> dict[str, Any]:
    """--param pairs checked against the parameter model (unknown names: did-you-mean), typed: what a
    Kubeflow run is submitted with."""

    given = param_pairs(values)
    checked = parse(model, decode_structured(model, given))
    return checked.model_dump(include=set(given))


def decode_structured(model: type[BaseModel], values: dict[str, Any]) -> dict[str, Any]:
    """JSON for the dict and list parameters (node selector, tolerations); the model converts the rest."""

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
                raise ConfigError(f"--param {key} must be JSON, got {value!r}.", f"e.g. --param {key}='{{}}'") from None
    return decoded


def pipeline_parameters(model: type[BaseModel], given: dict, param: list[str]) -> Any:
    """The parameter model from the command's options and its --param NAME=VALUE pairs (unknown names: did-you-mean)."""

    extra = decode_structured(model, param_pairs(param))
    # An option left at its default was not given: its --param wins. Only an option set on the command line
    # (a value other than the model's default) and the same --param conflict.
    set_here = {
        name for name, value in given.items() if name not in model.model_fields or value != default(model, name)
    }
    given = {name: value for name, value in given.items() if name in set_here or name not in extra}
    both = sorted(set(extra) & set_here)
    if both:
        raise ConfigError(f"{', '.join(both)} given both as an option and as --param.", "give each parameter once.")
    return parse(model, {**given, **extra})


# One --workspace for every command that works on this machine (run, monitor, serve, replay, trigger --local).
WORKSPACE_OPTION = typer.Option(
    Path(".champion"), help="The local workspace: runs, caches, logs and the sqlite MLflow (what `champion run` made)."
)
