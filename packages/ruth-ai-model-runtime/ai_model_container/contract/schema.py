"""The request and response schema of the model IPC contract (CONTRACT.md).

Every message that crosses the socket is one of the pydantic models below.
CONTRACT.md embeds the JSON Schema generated from them, and a test fails when
the two drift, so this module is the single source of truth for field names,
types and bounds.

Compatibility rules (CONTRACT.md, "Compatibility"): unknown fields are
ignored, so a newer client can add optional fields without breaking an older
daemon; a request that names a ``protocol_version`` other than
``PROTOCOL_VERSION`` is refused with ``UNSUPPORTED_VERSION``.
"""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictInt,
    Tag,
    TypeAdapter,
    field_validator,
)
from pydantic_core import PydanticCustomError

PROTOCOL_VERSION = 1
"""Version of the wire contract. Bumped only for incompatible changes."""

IDENTIFIER_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
"""Camera and model identifiers: safe in file names, socket names and shm names."""


_IDENTIFIER = re.compile(IDENTIFIER_PATTERN)

Identifier = Annotated[str, Field(pattern=IDENTIFIER_PATTERN)]


class ErrorCode(str, Enum):
    """The fixed set of machine-readable failure reasons.

    Clients branch on these, never on the human-readable message.
    """

    INVALID_REQUEST = "INVALID_REQUEST"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    UNSUPPORTED_VERSION = "UNSUPPORTED_VERSION"
    MODEL_NOT_READY = "MODEL_NOT_READY"
    FRAME_NOT_FOUND = "FRAME_NOT_FOUND"
    FRAME_EXPIRED = "FRAME_EXPIRED"
    FRAME_INVALID = "FRAME_INVALID"
    INFERENCE_FAILED = "INFERENCE_FAILED"
    TIMEOUT = "TIMEOUT"
    OVERLOADED = "OVERLOADED"
    INTERNAL = "INTERNAL"


class ModelStatus(str, Enum):
    """What the health op reports.

    READY: serving inference. DEGRADED: the daemon runs and answers, but
    inference is refused with MODEL_NOT_READY (for example a GPU-only model on
    a host without a GPU). DRAINING: shutting down, finishing requests in flight.
    """

    READY = "READY"
    DEGRADED = "DEGRADED"
    DRAINING = "DRAINING"


class _Message(BaseModel):
    # Unknown fields are ignored: the forward-compatibility rule of the contract.
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Request(_Message):
    protocol_version: StrictInt = Field(
        default=PROTOCOL_VERSION,
        description="Contract version the client speaks; only 1 is accepted.",
    )

    @field_validator("protocol_version")
    @classmethod
    def _supported_version(cls, value: int) -> int:
        if value != PROTOCOL_VERSION:
            raise PydanticCustomError(
                "unsupported_version",
                "protocol_version {got} is not supported; this daemon speaks {want}",
                {"got": value, "want": PROTOCOL_VERSION},
            )
        return value


class FrameMetadata(_Message):
    """What the caller believes about the frame; checked against the segment."""

    frame_id: int = Field(ge=1, description="Frame number in the camera's ring, starting at 1.")
    width: int = Field(gt=0, le=16384, description="Frame width in pixels.")
    height: int = Field(gt=0, le=16384, description="Frame height in pixels; even for NV12.")
    pixel_format: Literal["NV12"] = Field(default="NV12", description="Only NV12 is defined.")
    timestamp_ns: Optional[int] = Field(
        default=None, ge=0, description="Capture time from the slot record, if the caller read it."
    )


class InferenceRequest(_Request):
    """Run the model on one frame of one camera.

    A request without an ``op`` field is an inference request.
    """

    op: Literal["infer"] = "infer"
    frame_reference: str = Field(
        max_length=256,
        description="Shared-memory segment of the camera: /dev/shm/vas_frames_<camera_id>. "
        "Anything else is answered FRAME_INVALID.",
    )
    frame_metadata: FrameMetadata
    camera_id: Identifier
    model_id: Identifier
    timestamp: float = Field(ge=0, description="When the caller sent the request, Unix seconds.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="Per-request options the model documents (e.g. thresholds)."
    )


class HealthRequest(_Request):
    op: Literal["health"]


class DescribeRequest(_Request):
    op: Literal["describe"]


class StatsRequest(_Request):
    op: Literal["stats"]


def _request_kind(value: Any) -> Optional[str]:
    if isinstance(value, dict):
        return value.get("op", "infer")
    return getattr(value, "op", None)


Request = Annotated[
    Union[
        Annotated[InferenceRequest, Tag("infer")],
        Annotated[HealthRequest, Tag("health")],
        Annotated[DescribeRequest, Tag("describe")],
        Annotated[StatsRequest, Tag("stats")],
    ],
    Discriminator(
        _request_kind,
        custom_error_type="unknown_op",
        custom_error_message="a request is a JSON object whose op is absent (inference) or one of: health, describe, stats",
    ),
]

REQUEST_ADAPTER: TypeAdapter[Request] = TypeAdapter(Request)
"""Validates raw JSON bytes straight into a request model, in one pass in Rust."""


class Keypoint(_Message):
    x: float
    y: float
    score: float = Field(ge=0.0, le=1.0)
    name: Optional[str] = None


class Detection(_Message):
    """One detected object, in pixel coordinates of the source frame."""

    class_id: int = Field(ge=0)
    class_name: str
    confidence: float = Field(ge=0.0, le=1.0)
    bbox: tuple[float, float, float, float] = Field(
        description="[x_min, y_min, x_max, y_max] in pixels of the source frame."
    )
    keypoints: Optional[list[Keypoint]] = None
    attributes: Optional[dict[str, Any]] = None

    @field_validator("bbox")
    @classmethod
    def _ordered_box(cls, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        x_min, y_min, x_max, y_max = box
        if x_min > x_max or y_min > y_max:
            raise ValueError("bbox must be [x_min, y_min, x_max, y_max] with min <= max")
        return box


class _Response(_Message):
    protocol_version: int = PROTOCOL_VERSION
    error: Optional[str] = Field(default=None, description="Human-readable reason; null on success.")
    error_code: Optional[ErrorCode] = Field(default=None, description="Machine-readable reason; null on success.")


class InferenceResponse(_Response):
    """The answer to an inference request, and to any request that could not be understood."""

    model_id: str
    camera_id: Optional[str] = None
    frame_id: Optional[int] = None
    detections: list[Detection] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class HealthResponse(_Response):
    op: Literal["health"] = "health"
    model_id: str
    status: ModelStatus
    ready: bool
    device: str
    in_flight: int
    uptime_s: float


class DescribeResponse(_Response):
    op: Literal["describe"] = "describe"
    model_id: str
    model: dict[str, Any] = Field(description="The model's model.yaml, as validated.")
    device: str
    runtime_version: str
    python_version: str
    limits: dict[str, Any]


class LatencySummary(_Message):
    count: int
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    max_ms: Optional[float] = None


class StatsResponse(_Response):
    op: Literal["stats"] = "stats"
    model_id: str
    requests_total: int
    succeeded_total: int
    errors_by_code: dict[str, int]
    in_flight: int
    uptime_s: float
    latency: LatencySummary = Field(description="Server-side latency of recent inference requests.")
    gpu_memory_bytes: Optional[int] = Field(
        default=None, description="GPU memory the daemon's process has allocated through torch; null without one.")


Response = Union[InferenceResponse, HealthResponse, DescribeResponse, StatsResponse]


def is_identifier(value: str) -> bool:
    """True when ``value`` may be used as a camera or model id."""
    return bool(_IDENTIFIER.match(value))
