"""Ruth AI model runtime. This face is the model author's API: what a handler module imports.

The package has three rooms, one per audience:

- the face (this module, ``handler``, ``backends``, ``device``, ``request_options``): what a
  model author writes a handler with;
- ``contract``: the wire format, the shared-memory layout, the frame reader and the client,
  everything a program talking to a model daemon needs (Ruth AI Core imports only this);
- ``daemon``: the server, request logic, lifecycle and supervisor that run a handler.
"""

from importlib.metadata import PackageNotFoundError, version

from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameView
from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import (
    PROTOCOL_VERSION,
    Detection,
    ErrorCode,
    InferenceRequest,
    Keypoint,
)
from ai_model_container.device import Device
from ai_model_container.handler import FrameInfo, InferenceHandler
from ai_model_container.request_options import float_option, int_option

try:
    __version__ = version("ruth-ai-model-runtime")
except PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "PROTOCOL_VERSION",
    "Detection",
    "Device",
    "ErrorCode",
    "FrameInfo",
    "FrameView",
    "InferenceHandler",
    "InferenceRequest",
    "Keypoint",
    "ModelConfig",
    "RequestError",
    "float_option",
    "int_option",
]
