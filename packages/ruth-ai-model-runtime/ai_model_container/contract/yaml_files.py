"""YAML files (model.yaml, routing, assignments) read into pydantic models, errors naming the field.

Every configuration file of the project goes through here, so a mistake is reported the same way
everywhere: the file, then each offending field path and what is wrong with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def parse_yaml_model(path: Path, model: type[M], error: type[Exception]) -> M:
    """Validate the YAML file at ``path`` into ``model``; raise ``error`` naming the file and fields."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"{path}: cannot read: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise error(f"{path}: the top level must be a mapping")
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc']) or '<root>'}: {e['msg']}" for e in exc.errors()
        )
        raise error(f"{path}: {problems}") from None
