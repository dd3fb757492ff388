"""Ruth AI model runtime: the IPC server, frame reader and lifecycle every model daemon is built on."""

__version__ = "0.1.0"

from .errors import RequestError
from .frame_reader import FrameReader, FrameView
from .handler import FrameInfo, InferenceHandler
from .model_config import ModelConfig
from .schema import (
    PROTOCOL_VERSION,
    Detection,
    ErrorCode,
    InferenceRequest,
    InferenceResponse,
    Keypoint,
)

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "Detection",
    "ErrorCode",
    "FrameInfo",
    "FrameReader",
    "FrameView",
    "InferenceHandler",
    "InferenceRequest",
    "InferenceResponse",
    "Keypoint",
    "ModelConfig",
    "RequestError",
]
