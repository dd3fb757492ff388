"""Per-request options (``InferenceRequest.config``) read with bounds, for handlers.

A bad option is the caller's mistake, so it must come back as INVALID_REQUEST
naming the option, not as INFERENCE_FAILED from a ValueError deep in a handler.
"""

from __future__ import annotations

import math

from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.schema import ErrorCode, InferenceRequest


def float_option(request: InferenceRequest, name: str, default: float, minimum: float, maximum: float) -> float:
    """``request.config[name]`` as a float in [minimum, maximum], or ``default`` when absent."""
    value = request.config.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RequestError(ErrorCode.INVALID_REQUEST, f"config.{name} must be a number, got {value!r}")
    if not minimum <= value <= maximum:
        raise RequestError(ErrorCode.INVALID_REQUEST, f"config.{name} must be in [{minimum}, {maximum}], got {value}")
    return float(value)


def int_option(request: InferenceRequest, name: str, default: int, minimum: int, maximum: int) -> int:
    """``request.config[name]`` as an integer in [minimum, maximum], or ``default`` when absent.

    A float with no fractional part (``200.0``, as some JSON encoders write integers) is accepted.
    """
    value = request.config.get(name, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise RequestError(ErrorCode.INVALID_REQUEST, f"config.{name} must be an integer, got {value!r}")
    if not minimum <= value <= maximum:
        raise RequestError(ErrorCode.INVALID_REQUEST, f"config.{name} must be in [{minimum}, {maximum}], got {value}")
    return value
