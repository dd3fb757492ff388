"""model.yaml: the single declarative description of a model, validated by pydantic.

Errors name the offending field (``limits.timeout_ms: Input should be greater
than 0``) so an engineer onboarding a model can fix the file without reading
this code. Weights are listed with their sha256 and verified before the model
is loaded: a mismatch refuses to start.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ai_model_container.contract.schema import IDENTIFIER_PATTERN
from ai_model_container.contract.yaml_files import parse_yaml_model

SEMVER_PATTERN = r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$"
ENTRY_POINT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$"
MODEL_FILE = "model.yaml"


class _Section(BaseModel):
    # Typos in model.yaml are errors, not silently ignored settings.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Resolution(_Section):
    width: int = Field(gt=0, le=16384)
    height: int = Field(gt=0, le=16384)


class Resources(_Section):
    device: Literal["auto", "cuda", "cpu"] = Field(
        default="auto", description="auto: the GPU when present, else the CPU."
    )
    gpu_memory_mb: int = Field(default=0, ge=0, description="Hint for placement; not enforced.")
    cpu_fallback: bool = Field(
        default=True, description="Run on the CPU when no GPU is present; if false the daemon starts DEGRADED."
    )


class Limits(_Section):
    timeout_ms: int = Field(default=5000, gt=0, le=600_000, description="Per-request deadline inside the daemon.")
    max_concurrent_requests: int = Field(default=2, ge=1, le=256, description="Inferences run at once.")
    queue_wait_ms: int = Field(
        default=100, ge=0, le=600_000,
        description="How long a request waits for a free inference slot before OVERLOADED.",
    )
    max_connections: int = Field(default=64, ge=1, le=4096, description="Client connections served at once.")
    max_message_bytes: int = Field(default=1 << 20, ge=1024, le=64 << 20, description="Largest request accepted.")


class Batching(_Section):
    """Dynamic batching: requests from any connections run as one model call (``infer_batch``)."""

    max_batch_size: int = Field(ge=1, le=1024, description="Most requests in one model call.")
    max_queue_delay_us: int = Field(
        default=2000, ge=0, le=1_000_000,
        description="How long the oldest waiting request may wait for its batch to fill, in microseconds.",
    )


class OutputSchema(_Section):
    classes: list[str] = Field(min_length=1, description="Class names; a detection's class_id indexes this list.")
    keypoints: Optional[list[str]] = None


class WeightFile(_Section):
    path: str = Field(description="Relative to the model directory.")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @field_validator("path")
    @classmethod
    def _inside_model_dir(cls, value: str) -> str:
        if Path(value).is_absolute() or ".." in Path(value).parts:
            raise ValueError("weight paths are relative to the model directory and stay inside it")
        return value


class ModelConfig(_Section):
    model_id: str = Field(pattern=IDENTIFIER_PATTERN)
    model_name: str = Field(min_length=1)
    model_version: str = Field(pattern=SEMVER_PATTERN, description="Semantic version, e.g. 1.2.0.")
    description: str = ""
    supported_tasks: list[str] = Field(min_length=1)
    input_format: Literal["NV12"] = "NV12"
    expected_resolution: Optional[Resolution] = None
    resources: Resources = Resources()
    limits: Limits = Limits()
    batching: Optional[Batching] = Field(default=None, description="Absent: every request is its own model call.")
    output_schema: OutputSchema
    entry_point: str = Field(pattern=ENTRY_POINT_PATTERN, description="module:Class of the handler.")
    weights: list[WeightFile] = Field(default_factory=list)
    license: Optional[str] = None
    source: Optional[str] = None


class ModelConfigError(ValueError):
    """A model.yaml that cannot be used, with a message that names the file and field."""


class WeightsError(RuntimeError):
    """A weight file that is missing or does not match its sha256."""


def load_model_config(path: Path) -> ModelConfig:
    """Read and validate a model.yaml; raise ModelConfigError with field-level detail."""
    return parse_yaml_model(path, ModelConfig, ModelConfigError)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights(config: ModelConfig, model_dir: Path) -> None:
    """Check every listed weight file against its sha256; raise WeightsError on the first problem."""
    for weight in config.weights:
        path = model_dir / weight.path
        if not path.is_file():
            raise WeightsError(f"{config.model_id}: weight file {path} is missing")
        actual = sha256_of(path)
        if actual != weight.sha256:
            raise WeightsError(
                f"{config.model_id}: weight file {path} has sha256 {actual}, "
                f"model.yaml expects {weight.sha256}; refusing to start"
            )
