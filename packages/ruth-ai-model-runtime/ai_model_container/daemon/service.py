"""Turns one request body into exactly one response: the daemon's request logic.

The server owns sockets and framing; this module owns what a request means:
validation, control ops, admission (inference slots), deadlines, running the
handler on the frame, and mapping every failure to a contract error code.
Nothing a client sends, and nothing a handler raises, escapes as an exception.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from typing import Any, Optional, Protocol, Sequence

from pydantic import TypeAdapter, ValidationError

from ai_model_container import __version__
from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader, FrameView
from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import (
    REQUEST_ADAPTER,
    DescribeRequest,
    DescribeResponse,
    Detection,
    ErrorCode,
    HealthRequest,
    HealthResponse,
    InferenceRequest,
    InferenceResponse,
    ModelStatus,
    StatsRequest,
    StatsResponse,
    is_identifier,
)
from ai_model_container.contract.shm_layout import segment_reference
from ai_model_container.contract.wire import encode_model
from ai_model_container.daemon.deadlines import Watchdog
from ai_model_container.daemon.slots import InferenceSlots
from ai_model_container.daemon.stats import RequestStats
from ai_model_container.device import Device
from ai_model_container.handler import FrameInfo, InferenceHandler

logger = logging.getLogger(__name__)

_DETECTIONS = TypeAdapter(list[Detection])
_INFERENCE_REQUEST = InferenceRequest.__pydantic_validator__
"""Inference is the hot path: validating straight against InferenceRequest skips the op union's
Python discriminator (about 40% of validation). Anything it rejects goes through REQUEST_ADAPTER,
which decides the request's kind or its error exactly as before."""


class Exchange(Protocol):
    """The server's side of one request: where its single response goes."""

    def reply(self, payload: bytes, close: bool = False) -> bool:
        """Send the response unless one was already sent; ``close`` ends the connection after it."""
        ...


MIN_DEADLINE_SCAN_S = 0.005
MAX_DEADLINE_SCAN_S = 0.05
"""The watchdog scans every 1% of the timeout within these bounds: a deadline fires at most that
late, and an idle daemon is not woken 200 times a second (each wake-up costs a GIL hand-off)."""


class ModelService:
    def __init__(self, config: ModelConfig, handler: InferenceHandler, device: Device,
                 reader: Optional[FrameReader] = None) -> None:
        self.config = config
        self.handler = handler
        self.device = device
        self.reader = reader or FrameReader()
        self.stats = RequestStats()
        self.status = ModelStatus.DEGRADED if device.degraded_reason else ModelStatus.READY
        self._slots = InferenceSlots(config.limits.max_concurrent_requests)
        self._timeout_s = config.limits.timeout_ms / 1000.0
        self._watchdog = Watchdog(min(max(self._timeout_s / 100, MIN_DEADLINE_SCAN_S), MAX_DEADLINE_SCAN_S))
        self._device_name = str(device)
        self._queue_wait_s = config.limits.queue_wait_ms / 1000.0

    # -- entry points used by the server -------------------------------------------------

    def handle(self, body: bytes, exchange: Exchange) -> None:
        """Answer one request body through ``exchange``; never raises."""
        started = time.perf_counter()
        try:
            request = _INFERENCE_REQUEST.validate_json(body)
        except ValidationError:
            try:
                request = REQUEST_ADAPTER.validate_json(body)
            except ValidationError as exc:
                code, message = _classify(exc)
                self._fail(exchange, body, code, message)
                return
        if isinstance(request, InferenceRequest):
            self._infer(request, exchange, started)
        elif isinstance(request, HealthRequest):
            exchange.reply(encode_model(self.health()))
        elif isinstance(request, DescribeRequest):
            exchange.reply(encode_model(self.describe()))
        elif isinstance(request, StatsRequest):
            exchange.reply(encode_model(self.snapshot()))

    def error_payload(self, code: ErrorCode, message: str, body: bytes = b"") -> bytes:
        """An InferenceResponse carrying ``code``, echoing what can be salvaged from ``body``."""
        camera_id, frame_id = _salvage_ids(body)
        return encode_model(InferenceResponse(
            model_id=self.config.model_id, camera_id=camera_id, frame_id=frame_id,
            error=message, error_code=code,
        ))

    def record_framing_error(self, code: ErrorCode) -> None:
        self.stats.record(code)

    def drain(self) -> None:
        self.status = ModelStatus.DRAINING

    def close(self) -> None:
        self._watchdog.stop()

    # -- control ops --------------------------------------------------------------------

    @property
    def in_flight(self) -> int:
        return self._slots.taken

    def health(self) -> HealthResponse:
        return HealthResponse(
            model_id=self.config.model_id, status=self.status, ready=self.status is ModelStatus.READY,
            device=str(self.device), in_flight=self._slots.taken, uptime_s=round(self.stats.uptime_s, 3),
            error=self.device.degraded_reason,
            error_code=ErrorCode.MODEL_NOT_READY if self.device.degraded_reason else None,
        )

    def describe(self) -> DescribeResponse:
        return DescribeResponse(
            model_id=self.config.model_id, model=self.config.model_dump(mode="json"), device=str(self.device),
            runtime_version=__version__, python_version=platform.python_version(),
            limits=self.config.limits.model_dump(),
        )

    def snapshot(self) -> StatsResponse:
        total, succeeded, errors, latency = self.stats.snapshot()
        return StatsResponse(
            model_id=self.config.model_id, requests_total=total, succeeded_total=succeeded,
            errors_by_code=errors, in_flight=self._slots.taken, uptime_s=round(self.stats.uptime_s, 3),
            latency=latency,
        )

    # -- inference ----------------------------------------------------------------------

    def _infer(self, request: InferenceRequest, exchange: Exchange, started: float) -> None:
        if self.status is not ModelStatus.READY:
            reason = self.device.degraded_reason or f"model is {self.status.value}"
            self._respond_error(exchange, request, ErrorCode.MODEL_NOT_READY, reason, started)
            return
        if request.model_id != self.config.model_id:
            self._respond_error(exchange, request, ErrorCode.INVALID_REQUEST,
                                f"this daemon serves model {self.config.model_id!r}, not {request.model_id!r}", started)
            return
        if not self._slots.take(self._queue_wait_s):
            self._respond_error(exchange, request, ErrorCode.OVERLOADED,
                                f"all {self.config.limits.max_concurrent_requests} inference slots busy "
                                f"for {self.config.limits.queue_wait_ms} ms", started)
            return

        def expire() -> None:
            timeout_payload = self._error_response(
                request, ErrorCode.TIMEOUT, f"inference exceeded {self.config.limits.timeout_ms} ms")
            if exchange.reply(timeout_payload, close=True):
                self.stats.record(ErrorCode.TIMEOUT, time.perf_counter() - started)

        ticket = self._watchdog.track(time.monotonic() + self._timeout_s - (time.perf_counter() - started), expire)
        try:
            payload, code = self._run(request, started), None
        except RequestError as exc:
            payload, code = self._error_response(request, exc.code, exc.message), exc.code
        except Exception as exc:
            logger.exception("handler failed on camera %s frame %s", request.camera_id, request.frame_metadata.frame_id)
            message = f"{type(exc).__name__}: {exc}"
            payload, code = self._error_response(request, ErrorCode.INFERENCE_FAILED, message), ErrorCode.INFERENCE_FAILED
        finally:
            self._watchdog.untrack(ticket)
            self._slots.give_back()
        if exchange.reply(payload):
            self.stats.record(code, time.perf_counter() - started)

    def _run(self, request: InferenceRequest, started: float) -> bytes:
        handler = self.handler
        info: list[FrameInfo] = []

        def preprocess(frame: FrameView) -> Any:
            info.append(FrameInfo.of(frame))
            return handler.preprocess(frame, request)

        if request.frame_reference != segment_reference(request.camera_id):
            raise RequestError(ErrorCode.FRAME_INVALID, f"frame_reference {request.frame_reference!r} is not "
                               f"{segment_reference(request.camera_id)!r}, the ring of camera {request.camera_id!r}")
        inputs = self.reader.read_camera(request.camera_id, request.frame_metadata, preprocess)
        outputs = handler.infer(inputs)
        detections = _as_detections(handler.postprocess(outputs, inputs, info[0], request))
        return encode_model(InferenceResponse(
            model_id=self.config.model_id, camera_id=request.camera_id, frame_id=request.frame_metadata.frame_id,
            detections=detections,
            metadata={
                "model_version": self.config.model_version,
                "device": self._device_name,
                "width": info[0].width,
                "height": info[0].height,
                "frame_timestamp_ns": info[0].timestamp_ns,
                "server_ms": round((time.perf_counter() - started) * 1000.0, 3),
            },
        ))

    def _error_response(self, request: InferenceRequest, code: ErrorCode, message: str) -> bytes:
        return encode_model(InferenceResponse(
            model_id=self.config.model_id, camera_id=request.camera_id, frame_id=request.frame_metadata.frame_id,
            error=message, error_code=code,
        ))

    def _respond_error(self, exchange: Exchange, request: InferenceRequest, code: ErrorCode,
                       message: str, started: float) -> None:
        if exchange.reply(self._error_response(request, code, message)):
            self.stats.record(code, time.perf_counter() - started)

    def _fail(self, exchange: Exchange, body: bytes, code: ErrorCode, message: str) -> None:
        if exchange.reply(self.error_payload(code, message, body)):
            self.stats.record(code)


def _as_detections(result: Sequence[Any]) -> list[Detection]:
    if type(result) is list:
        for item in result:
            if type(item) is not Detection:
                break
        else:
            return result
    try:
        return _DETECTIONS.validate_python(list(result))
    except (ValidationError, TypeError) as exc:
        raise RequestError(ErrorCode.INFERENCE_FAILED, f"postprocess returned invalid detections: {exc}") from None


def _classify(exc: ValidationError) -> tuple[ErrorCode, str]:
    errors = exc.errors(include_url=False, include_input=False)
    if any(error["type"] == "unsupported_version" for error in errors):
        return ErrorCode.UNSUPPORTED_VERSION, next(e["msg"] for e in errors if e["type"] == "unsupported_version")
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'][1:]) or '<request>'}: {error['msg']}" for error in errors[:5]
    )
    return ErrorCode.INVALID_REQUEST, f"invalid request: {problems}"


def _salvage_ids(body: bytes) -> tuple[Optional[str], Optional[int]]:
    """Best effort: echo camera_id and frame_id from a request that failed validation."""
    try:
        raw = json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than the json module allows
        return None, None
    if not isinstance(raw, dict):
        return None, None
    camera_id = raw.get("camera_id")
    if not isinstance(camera_id, str) or not is_identifier(camera_id):
        camera_id = None
    metadata = raw.get("frame_metadata")
    frame_id = metadata.get("frame_id") if isinstance(metadata, dict) else None
    if not isinstance(frame_id, int) or isinstance(frame_id, bool):
        frame_id = None
    return camera_id, frame_id
