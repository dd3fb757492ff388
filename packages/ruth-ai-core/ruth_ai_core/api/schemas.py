"""The API's documents: what the frontend and Core read, and what admin calls send.

Identifiers follow the runtime's rule (``[A-Za-z0-9_-]{1,64}``) and node names
``assignment_store.NODE_PATTERN``; anything else is refused with 422 before it
reaches the database.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ai_model_container.contract.schema import IDENTIFIER_PATTERN

from ..storage.assignment_store import NODE_PATTERN

ModelId = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, description="Model identifier.")]
CameraId = Annotated[str, Field(pattern=IDENTIFIER_PATTERN, description="Camera identifier.")]
NodeName = Annotated[str, Field(pattern=NODE_PATTERN, description="Node (host) that runs a camera.")]


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class Problem(_Out):
    """Why a request failed."""

    detail: str


class ModelSummary(_Out):
    model_id: ModelId
    name: str
    enabled: bool
    current_version: str
    tasks: list[str]
    updated_at: float = Field(description="Unix seconds of the last import or enable/disable.")


class ModelDetail(ModelSummary):
    versions: list[str] = Field(description="Every imported version, oldest import first.")
    source: str = Field(description="Where the current version was imported from.")
    metadata: dict[str, Any] = Field(description="The current version's model.yaml, as validated.")


class AssignmentOut(_Out):
    camera_id: CameraId
    model_id: ModelId
    node: NodeName
    fps: float
    max_in_flight: int
    config: dict[str, Any]
    runnable: bool = Field(description="False when the registry would refuse it now (model unknown or disabled); "
                                       "a core does not run it.")
    reason: Optional[str] = Field(default=None, description="Why it is not runnable.")
    updated_at: float


class CameraAssignments(_Out):
    camera_id: CameraId
    node: NodeName
    assignments: list[AssignmentOut]


class NodeAssignmentsOut(_Out):
    node: NodeName
    assignments: list[AssignmentOut]


class NodeSummaryOut(_Out):
    node: NodeName
    cameras: int
    assignments: int


class DatabaseHealth(_Out):
    backend: Literal["sqlite", "postgresql"]
    reachable: bool
    schema_revision: Optional[str] = None
    change_revision: Optional[int] = None
    error: Optional[str] = None


class Health(_Out):
    status: Literal["ok", "unavailable"]
    database: DatabaseHealth


class AssignmentIn(BaseModel):
    """An assignment as an admin sets it (the camera and model are in the path)."""

    model_config = ConfigDict(extra="forbid")

    fps: float = Field(gt=0, le=240, description="Frames per second to send to the model.")
    max_in_flight: int = Field(default=1, ge=1, le=64)
    config: dict[str, Any] = Field(default_factory=dict, description="Per-request options for the model.")
    node: Optional[NodeName] = Field(default=None, description="Required when the camera is new.")


class NodeAssignmentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    camera: CameraId
    model: ModelId
    fps: float = Field(gt=0, le=240)
    max_in_flight: int = Field(default=1, ge=1, le=64)
    config: dict[str, Any] = Field(default_factory=dict)


class NodeAssignmentsIn(BaseModel):
    """A node's whole set of assignments (as in an assignments file)."""

    model_config = ConfigDict(extra="forbid")

    assignments: list[NodeAssignmentIn] = Field(max_length=10_000)

    @model_validator(mode="after")
    def _unique_pairs(self) -> "NodeAssignmentsIn":
        seen: set[tuple[str, str]] = set()
        for item in self.assignments:
            if (item.camera, item.model) in seen:
                raise ValueError(f"camera {item.camera!r} is assigned to model {item.model!r} twice")
            seen.add((item.camera, item.model))
        return self


class PairOut(_Out):
    camera_id: CameraId
    model_id: ModelId


class WriteResultOut(_Out):
    """What a replace did, pair by pair."""

    added: list[PairOut]
    changed: list[PairOut]
    removed: list[PairOut]
    unchanged: list[PairOut]
