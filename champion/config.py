"""Versioned YAML configs (gate policies, evaluator configs): loaded into strict pydantic models."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from champion.errors import ConfigError

Model = TypeVar("Model", bound=BaseModel)


def load_versioned_yaml(ref: str, model: type[Model], packaged_dir: Path, kind: str) -> Model:
    """``ref`` is a packaged name (a file in ``packaged_dir``) or a path to a YAML file.

    Unknown keys and bad values are ConfigErrors naming each offending field.
    """
    path = Path(ref) if ref.endswith((".yaml", ".yml")) else packaged_dir / f"{ref}.yaml"
    if not path.is_file():
        packaged = sorted(p.stem for p in packaged_dir.glob("*.yaml"))
        raise ConfigError(f"{kind} {ref!r} not found.", f"pass a path to a YAML file or one of {packaged}.")
    try:
        return model.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{kind} {path} is not valid YAML: {exc}", "fix the YAML syntax.") from exc
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'file'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"{kind} {path} is invalid: {problems}.", f"fix the fields named; see {packaged_dir.name}/default.yaml.") from exc
