"""The desired state: which cameras feed which models, at what FPS.

    assignments:
      - {camera: lobby, model: fall_detection, fps: 5}
      - {camera: lobby, model: helmet, fps: 2, config: {threshold: 0.5}}
      - {camera: gate, model: fall_detection, fps: 5, max_in_flight: 2}

A (camera, model) pair appears at most once. ``ruth-ai run`` reconciles the
running subscriptions to this file whenever it changes.

``config`` is sent with every request of its pair, so it is bounded: at most
``MAX_CONFIG_BYTES`` (64 KiB) of JSON, well under a daemon's default message limit
(1 MiB). An assignment over it is rejected on its own when the file loads, with the
reason, and nothing is sent for it; the file's other assignments are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticSerializationError, to_json

from ai_model_container.contract.schema import Identifier
from ai_model_container.contract.yaml_files import parse_yaml_model

SubscriptionKey = tuple[str, str]
"""(camera_id, model_id)"""

MAX_CONFIG_BYTES = 64 << 10
"""Largest per-request config, as the JSON sent on the wire (CONTRACT.md, "Limits")."""


class AssignmentError(ValueError):
    """An assignments file that cannot be used."""


class Assignment(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    camera: Identifier
    model: Identifier
    fps: float = Field(gt=0, le=240, description="Frames per second to send to the model.")
    max_in_flight: int = Field(default=1, ge=1, le=64, description="Requests outstanding at once for this pair.")
    config: dict[str, Any] = Field(default_factory=dict, description="Per-request options for the model.")

    @property
    def key(self) -> SubscriptionKey:
        return (self.camera, self.model)


class AssignmentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    assignments: list[Assignment] = Field(default_factory=list)

    @model_validator(mode="after")
    def _unique_pairs(self) -> "AssignmentFile":
        seen: set[SubscriptionKey] = set()
        for assignment in self.assignments:
            if assignment.key in seen:
                raise ValueError(f"camera {assignment.camera!r} is assigned to model {assignment.model!r} twice")
            seen.add(assignment.key)
        return self

    def by_key(self) -> dict[SubscriptionKey, Assignment]:
        return {assignment.key: assignment for assignment in self.assignments}


def load_assignments(path: Path) -> AssignmentFile:
    return parse_yaml_model(path, AssignmentFile, AssignmentError)


def config_problem(assignment: Assignment) -> Optional[str]:
    """Why ``assignment``'s config cannot go out with its requests, or None when it can.

    Measured as the JSON the request will carry, after any YAML aliases are expanded.
    """
    try:
        size = len(to_json(assignment.config))
    except PydanticSerializationError:
        return "its config holds values that are not JSON"
    if size > MAX_CONFIG_BYTES:
        return (f"its config is {size} bytes of JSON, over the {MAX_CONFIG_BYTES}-byte limit of a per-request "
                "config (CONTRACT.md, \"Limits\")")
    return None
