"""The desired state: which cameras feed which models, at what FPS.

    assignments:
      - {camera: lobby, model: fall_detection, fps: 5}
      - {camera: lobby, model: helmet, fps: 2, config: {threshold: 0.5}}
      - {camera: gate, model: fall_detection, fps: 5, max_in_flight: 2}

A (camera, model) pair appears at most once. ``ruth-ai run`` reconciles the
running subscriptions to this file whenever it changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ai_model_container.contract.schema import Identifier
from ai_model_container.contract.yaml_files import parse_yaml_model

SubscriptionKey = tuple[str, str]
"""(camera_id, model_id)"""


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
