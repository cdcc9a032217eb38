"""Versioned YAML configs (gate policies, evaluator configs): loaded into strict pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from champion.errors import ConfigError, field_problems
from champion.inputs import read_text

Model = TypeVar("Model", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error: plain YAML keeps
    the last value silently, so ``margin: 0.05`` followed by a stray ``margin: 0.5`` would loosen a gate."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (line {key_node.start_mark.line + 1}): a key may appear once per mapping",
                key_node.start_mark,
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str):
    """Parse YAML safely, refusing duplicate keys."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def load_versioned_yaml(ref: str, model: type[Model], packaged_dir: Path, kind: str) -> Model:
    """``ref`` is a packaged name (a file in ``packaged_dir``), a path to a YAML file, or the model's JSON
    (how a run hands a config it pinned at its start to later steps).

    Unknown keys and bad values are ConfigErrors naming each offending field.
    """
    if ref.lstrip().startswith("{"):
        try:
            return model.model_validate_json(ref)
        except ValidationError as exc:
            problems = field_problems(exc, whole="file")
            raise ConfigError(
                f"the inline {kind} is invalid: {problems}.", f"pass a {kind} name, a YAML path, or its JSON."
            ) from exc
    path = Path(ref) if ref.endswith((".yaml", ".yml")) else packaged_dir / f"{ref}.yaml"
    if not path.is_file():
        packaged = sorted(p.stem for p in packaged_dir.glob("*.yaml"))
        raise ConfigError(f"{kind} {ref!r} not found.", f"pass a path to a YAML file or one of {packaged}.")
    try:
        return model.model_validate(load_yaml(read_text(path, kind, error=ConfigError)))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{kind} {path} is not valid YAML: {exc}", "fix the YAML syntax.") from exc
    except ValidationError as exc:
        problems = field_problems(exc, whole="file")
        raise ConfigError(
            f"{kind} {path} is invalid: {problems}.", f"fix the fields named; see {packaged_dir.name}/default.yaml."
        ) from exc
