"""MkDocs hooks: the reference tables are generated from the code when the site is built, so they cannot drift.

A page asks for a table with a marker on a line of its own, e.g. ``<!-- champion:steps -->``:

- ``champion:steps``: every pipeline step from ``components.registry()`` (whether KFP may cache it, its version,
  what it does, from the component's own description);
- ``champion:parameters <Model> <command>``: a parameter model of ``champion.parameters`` with the options of
  ``champion <command>``;
- ``champion:cli``: every command of the Typer app with its options, from the app itself;
- ``champion:schema <module>:<Model>``: a pydantic model's fields (type, default, constraint, meaning) and
  those of the models it nests.

Examples of files (policies, configs) are included with pymdownx.snippets, never copied.
"""

from __future__ import annotations

import importlib
import re
import typing
from typing import Any

from pydantic import BaseModel

MARKER = re.compile(r"^<!-- champion:(?P<what>[a-z]+)(?: (?P<args>[^>]*?))? -->$", re.MULTILINE)


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    return MARKER.sub(lambda match: expand(match["what"], (match["args"] or "").split()), markdown)


def expand(what: str, args: list[str]) -> str:
    generators = {"steps": steps_table, "parameters": parameters_table, "cli": cli_reference, "schema": schema_tables}
    if what not in generators:
        raise ValueError(f"unknown docs marker champion:{what}; known: {', '.join(generators)}")
    return generators[what](*args)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def steps_table() -> str:
    from components import registry

    lines = ["| step | cached | version | what it does |", "|---|---|---|---|"]
    for name, registered in registry().items():
        description = registered.op.component_spec.description or ""
        does = description.split(": ", 1)[1] if ": " in description else description
        cached = "yes" if registered.step.cacheable else "never"
        lines.append(f"| `{name}` | {cached} | {registered.step.version} | {_cell(does)} |")
    return "\n".join(lines) + "\n"


def parameters_table(model_name: str, command: str) -> str:
    from champion import parameters

    return parameters.markdown_table(getattr(parameters, model_name), command)


def cli_reference() -> str:
    from pipelines.cli import commands

    return "\n".join(_command_section(f"champion {name}", command) for name, command in commands())


def _command_section(title: str, command: Any) -> str:
    arguments = [param.name.upper() for param in command.params if param.param_type_name == "argument"]
    usage = " ".join(["[OPTIONS]", *arguments])
    lines = [f"## `{title}`", "", _cell(command.help or ""), "", f"```text\n{title} {usage}\n```", ""]
    rows = []
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            names = ", ".join(f"`{opt}`" for opt in (*param.opts, *param.secondary_opts))
            default = "" if param.default in (None, (), [], "") or param.required else f"`{param.default}`"
            envvar = f" (env `{param.envvar}`)" if param.envvar else ""
            rows.append(f"| {names} | {default} | {_cell(param.help or '')}{envvar} |")
        elif param.param_type_name == "argument":
            rows.append(f"| `{param.name.upper()}` (argument) | | {_cell(getattr(param, 'help', '') or '')} |")
    if rows:
        lines += ["| option | default | what it does |", "|---|---|---|", *rows, ""]
    return "\n".join(lines)


def schema_tables(target: str) -> str:
    module_name, _, model_name = target.partition(":")
    model = getattr(importlib.import_module(module_name), model_name)
    sections, seen, queue = [], set(), [model]
    while queue:
        current = queue.pop(0)
        if current in seen:
            continue
        seen.add(current)
        sections.append(_model_table(current))
        queue.extend(_nested_models(current))
    return "\n".join(sections)


def _nested_models(model: type[BaseModel]) -> list[type[BaseModel]]:
    nested = []
    for field in model.model_fields.values():
        for candidate in (field.annotation, *typing.get_args(field.annotation)):
            for inner in (candidate, *typing.get_args(candidate)):
                if isinstance(inner, type) and issubclass(inner, BaseModel):
                    nested.append(inner)
    return nested


def _type_name(annotation: Any) -> str:
    text = repr(annotation) if not isinstance(annotation, type) else annotation.__name__
    return re.sub(r"\b(?:typing|[a-z_]+(?:\.[a-z_]+)*)\.", "", text).replace("NoneType", "None")


def _constraints(field: Any) -> str:
    shown = []
    for item in field.metadata:
        for key in ("ge", "gt", "le", "lt", "min_length", "pattern"):
            value = getattr(item, key, None)
            if value is not None:
                shown.append(f"{key} {value}")
    return ", ".join(shown)


def _model_table(model: type[BaseModel]) -> str:
    doc = " ".join((model.__doc__ or "").split())
    lines = [f"### `{model.__name__}`", "", doc, "", "| field | type | default | constraint | meaning |"]
    lines.append("|---|---|---|---|---|")
    for name, field in model.model_fields.items():
        default = "required" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
        lines.append(
            f"| `{name}` | `{_cell(_type_name(field.annotation))}` | {_cell(default)} | {_constraints(field)} "
            f"| {_cell(field.description or '')} |"
        )
    return "\n".join(lines) + "\n"
