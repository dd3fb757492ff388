"""What a request means: validation, control ops, admission and deadlines, on the server's event loop.

The server owns sockets and framing; this module turns each request body into
exactly one answer through its ``Reply``. Control ops and refusals are
answered at once. An inference is checked (status, model id, frame
reference), then queued for the model (``Batcher``); the worker threads run
it through the ``Pipeline`` and hand the answer back to the loop. Two timers
per request keep its promises (CONTRACT.md, "Timeouts, concurrency and
shutdown"): one not yet started ``limits.queue_wait_ms`` after it arrived is
answered OVERLOADED, one not answered ``limits.timeout_ms`` after it arrived
is answered TIMEOUT (``Deadlines``: one loop timer for all requests). Its late
result, if the model ever returns, is dropped.
Nothing a client sends, and nothing a handler raises, escapes as an exception.

``BaseService`` is what every service on a model socket shares (validation,
control ops, counters); ``ModelService`` runs a model; the supervisor's
stand-in (``stand_in``) answers for a model whose process is down.
"""

from __future__ import annotations

import asyncio
import json
import platform
import time
from typing import Optional

from pydantic import ValidationError

from ai_model_container import __version__
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import (
    REQUEST_ADAPTER,
    DescribeRequest,
    DescribeResponse,
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
from ai_model_container.daemon.batcher import Batcher
from ai_model_container.daemon.connection import Reply
from ai_model_container.daemon.deadlines import Deadlines
from ai_model_container.daemon.pipeline import Outcome, Pipeline
from ai_model_container.daemon.stats import RequestStats
from ai_model_container.device import Device, gpu_memory_in_use
from ai_model_container.handler import InferenceHandler

_INFERENCE_REQUEST = InferenceRequest.__pydantic_validator__
"""Inference is the hot path: validating straight against InferenceRequest skips the op union's
Python discriminator (about 40% of validation). Anything it rejects goes through REQUEST_ADAPTER,
which decides the request's kind or its error exactly as before."""


class BaseService:
    """Validation, control ops and counters of a model socket; subclasses answer inference."""

    def __init__(self, config: ModelConfig, device_name: str, status: ModelStatus,
                 reason: Optional[str] = None) -> None:
        self.config = config
        self.limits = config.limits
        self.device_name = device_name
        self.status = status
        self.reason = reason
        """Why the model is not READY (health's ``error``), None when it is."""
        self.stats = RequestStats()
        self.in_flight = 0
        """Inference requests accepted and not yet answered."""
        self.loop: Optional[asyncio.AbstractEventLoop] = None

    # -- the server's side (loop thread) ------------------------------------------------

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop

    def stop(self) -> None:
        """Nothing to stop: this service has no threads of its own."""

    def drain(self) -> None:
        self.status = ModelStatus.DRAINING

    def handle(self, body: bytes, reply: Reply) -> None:
        """Answer one request body through ``reply`` (now, or later for an inference); never raises."""
        received = time.perf_counter()
        try:
            request = _INFERENCE_REQUEST.validate_json(body)
        except ValidationError:
            try:
                request = REQUEST_ADAPTER.validate_json(body)
            except ValidationError as exc:
                code, message = _classify(exc)
                self.answer(reply, self.error_payload(code, message, body), code)
                return
        if isinstance(request, InferenceRequest):
            self.infer(request, reply, received)
        elif isinstance(request, HealthRequest):
            reply.send(encode_model(self.health()))
        elif isinstance(request, DescribeRequest):
            reply.send(encode_model(self.describe()))
        elif isinstance(request, StatsRequest):
            reply.send(encode_model(self.snapshot()))

    def error_payload(self, code: ErrorCode, message: str, body: bytes = b"") -> bytes:
        camera_id, frame_id = _salvage_ids(body)
        return encode_model(InferenceResponse(
            model_id=self.config.model_id, camera_id=camera_id, frame_id=frame_id, error=message, error_code=code,
        ))

    def record_framing_error(self, code: ErrorCode) -> None:
        self.stats.record(code)

    def answer(self, reply: Reply, payload: bytes, code: Optional[ErrorCode], latency_s: Optional[float] = None) -> None:
        """Send an inference's (or a refusal's) answer and count it: the one place outcomes are counted."""
        reply.send(payload)
        self.stats.record(code, latency_s)

    # -- inference ----------------------------------------------------------------------

    def infer(self, request: InferenceRequest, reply: Reply, received: float) -> None:
        message = self.reason or f"model is {self.status.value}"
        self.answer(reply, self._inference_error(request, ErrorCode.MODEL_NOT_READY, message),
                    ErrorCode.MODEL_NOT_READY, time.perf_counter() - received)

    def _inference_error(self, request: InferenceRequest, code: ErrorCode, message: str) -> bytes:
        return encode_model(InferenceResponse(
            model_id=self.config.model_id, camera_id=request.camera_id, frame_id=request.frame_metadata.frame_id,
            error=message, error_code=code,
        ))

    # -- control ops --------------------------------------------------------------------

    def health(self) -> HealthResponse:
        not_ready = self.status is not ModelStatus.READY
        return HealthResponse(
            model_id=self.config.model_id, status=self.status, ready=not not_ready, device=self.device_name,
            in_flight=self.in_flight, uptime_s=round(self.stats.uptime_s, 3), error=self.reason,
            error_code=ErrorCode.MODEL_NOT_READY if self.reason else None,
        )

    def describe(self) -> DescribeResponse:
        return DescribeResponse(
            model_id=self.config.model_id, model=self.config.model_dump(mode="json"), device=self.device_name,
            runtime_version=__version__, python_version=platform.python_version(),
            limits=self.config.limits.model_dump(),
        )

    def snapshot(self) -> StatsResponse:
        total, succeeded, errors, latency = self.stats.snapshot()
        return StatsResponse(
            model_id=self.config.model_id, requests_total=total, succeeded_total=succeeded, errors_by_code=errors,
            in_flight=self.in_flight, uptime_s=round(self.stats.uptime_s, 3), latency=latency,
            gpu_memory_bytes=gpu_memory_in_use(),
        )


class _Job:
    """One inference request from the moment it is accepted until it is answered (loop thread owns it)."""

    __slots__ = ("request", "reply", "received", "started_at", "started", "done")

    def __init__(self, request: InferenceRequest, reply: Reply, started_at: float) -> None:
        self.request = request
        self.reply = reply
        self.received = time.monotonic()
        self.started_at = started_at
        self.started = False
        """Set by the worker that took it: past this point only TIMEOUT can overtake it."""
        self.done = False


class ModelService(BaseService):
    def __init__(self, config: ModelConfig, handler: InferenceHandler, device: Device,
                 reader: Optional[FrameReader] = None) -> None:
        status = ModelStatus.DEGRADED if device.degraded_reason else ModelStatus.READY
        super().__init__(config, str(device), status, device.degraded_reason)
        self.handler = handler
        self.pipeline = Pipeline(config, handler, reader or FrameReader(), str(device))
        limits, batching = config.limits, config.batching
        self._timeout_s = limits.timeout_ms / 1000.0
        self._queue_wait_s = limits.queue_wait_ms / 1000.0
        self._batcher: Batcher[_Job] = Batcher(
            self._run, workers=limits.max_concurrent_requests,
            max_batch_size=batching.max_batch_size if batching else 1,
            max_queue_delay_s=batching.max_queue_delay_us / 1e6 if batching else 0.0,
            name=f"model-{config.model_id}",
        )

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        super().start(loop)
        self._timeouts: Deadlines[_Job] = Deadlines(loop, self._timeout_s, self._deadline_passed)
        self._queue_waits: Optional[Deadlines[_Job]] = (
            Deadlines(loop, self._queue_wait_s, self._queue_wait_over) if self._queue_wait_s < self._timeout_s else None)
        self._batcher.start()

    def stop(self) -> None:
        self._batcher.stop()

    def infer(self, request: InferenceRequest, reply: Reply, received: float) -> None:
        if self.status is not ModelStatus.READY:
            super().infer(request, reply, received)
            return
        if request.model_id != self.config.model_id:
            self._refuse(request, reply, received, ErrorCode.INVALID_REQUEST,
                         f"this daemon serves model {self.config.model_id!r}, not {request.model_id!r}")
            return
        if request.frame_reference != segment_reference(request.camera_id):
            self._refuse(request, reply, received, ErrorCode.FRAME_INVALID,
                         f"frame_reference {request.frame_reference!r} is not {segment_reference(request.camera_id)!r},"
                         f" the ring of camera {request.camera_id!r}")
            return
        job = _Job(request, reply, received)
        self._timeouts.add(job)
        if self._queue_waits is not None:
            self._queue_waits.add(job)
        self.in_flight += 1
        self._batcher.submit(job)

    def _refuse(self, request: InferenceRequest, reply: Reply, received: float, code: ErrorCode, message: str) -> None:
        self.answer(reply, self._inference_error(request, code, message), code, time.perf_counter() - received)

    # -- worker threads -----------------------------------------------------------------

    def _run(self, jobs: list[_Job]) -> None:
        for job in jobs:
            job.started = True
        # A job answered meanwhile (deadline) has let its request go: take each request once, skip those.
        taken = [(job, request) for job in jobs if (request := job.request) is not None]
        if not taken:
            return
        outcomes = self.pipeline.run([request for _, request in taken], [job.started_at for job, _ in taken])
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self._finish, [job for job, _ in taken], outcomes)

    # -- back on the loop ---------------------------------------------------------------

    def _finish(self, jobs: list[_Job], outcomes: list[Outcome]) -> None:
        for job, (payload, code) in zip(jobs, outcomes):
            if not job.done:  # else answered TIMEOUT meanwhile: this late result goes nowhere
                self._close(job, payload, code)

    def _queue_wait_over(self, job: _Job) -> None:
        """queue_wait_ms since it arrived and no worker took it: OVERLOADED (a started one waits for TIMEOUT)."""
        if job.started:
            return
        self._close(job, self.pipeline.error(
            job.request, ErrorCode.OVERLOADED,
            f"no inference worker free for {self.limits.queue_wait_ms} ms "
            f"({self.limits.max_concurrent_requests} workers, {self._batcher.queued} requests queued)"),
            ErrorCode.OVERLOADED)

    def _deadline_passed(self, job: _Job) -> None:
        self._close(job, self.pipeline.error(job.request, ErrorCode.TIMEOUT, f"inference exceeded {self.limits.timeout_ms} ms"),
                    ErrorCode.TIMEOUT)

    def _close(self, job: _Job, payload: bytes, code: Optional[ErrorCode]) -> None:
        """Answer a job once; its request and reply are let go (the deadline queues still hold the job)."""
        job.done = True
        self.in_flight -= 1
        self.answer(job.reply, payload, code, time.perf_counter() - job.started_at)
        job.request = job.reply = None  # type: ignore[assignment]


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
