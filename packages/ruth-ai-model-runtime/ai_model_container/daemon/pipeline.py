"""Runs the handler on a batch of requests, on a worker thread: frame, preprocess, model, postprocess.

Each request keeps its own fate. Its frame is read and preprocessed on its
own, under its own seqlock check (a frame overwritten during preprocess is
FRAME_EXPIRED for that request only); the inputs that survive go to the model
in one ``infer_batch`` call; each output is postprocessed and encoded for its
own request. When the model call raises for a whole batch, the inputs are run
again one at a time, so one input the model cannot take fails alone and its
batch-mates are still answered; after a GPU out-of-memory error the cached
GPU memory is released first, so a batch too large for the card degrades to
single frames instead of failing every request. Nothing a handler does escapes: every failure
becomes that request's error answer.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Optional, Sequence

from pydantic import TypeAdapter, ValidationError

from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader, FrameView
from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import Detection, ErrorCode, InferenceRequest, InferenceResponse
from ai_model_container.contract.wire import encode_model
from ai_model_container.device import is_out_of_memory, release_gpu_cache
from ai_model_container.handler import FrameInfo, InferenceHandler

logger = logging.getLogger(__name__)

_DETECTIONS = TypeAdapter(list[Detection])

Outcome = tuple[bytes, Optional[ErrorCode]]
"""The encoded answer for one request and its error code (None on success)."""


class Pipeline:
    def __init__(self, config: ModelConfig, handler: InferenceHandler, reader: FrameReader, device_name: str) -> None:
        self._config = config
        self._handler = handler
        self._reader = reader
        self._device_name = device_name

    def run(self, requests: Sequence[InferenceRequest], received: Sequence[float]) -> list[Outcome]:
        """One answer per request, in order; ``received`` (perf_counter) dates each for server_ms."""
        outcomes: list[Optional[Outcome]] = [None] * len(requests)
        ready: list[tuple[int, Any, FrameInfo]] = []
        for index, request in enumerate(requests):
            try:
                inputs, info = self._prepare(request)
            except Exception as exc:
                outcomes[index] = self._failure(request, exc, "preprocess")
            else:
                ready.append((index, inputs, info))
        if ready:
            outputs = self._infer([inputs for _, inputs, _ in ready])
            for (index, inputs, info), output in zip(ready, outputs):
                request = requests[index]
                if isinstance(output, _Failed):
                    outcomes[index] = self._failure(request, output.error, "infer")
                    continue
                try:
                    outcomes[index] = (self._success(request, output, inputs, info, received[index]), None)
                except Exception as exc:
                    outcomes[index] = self._failure(request, exc, "postprocess")
        return outcomes  # type: ignore[return-value]  (every index was filled above)

    def error(self, request: InferenceRequest, code: ErrorCode, message: str) -> bytes:
        return encode_model(InferenceResponse(
            model_id=self._config.model_id, camera_id=request.camera_id, frame_id=request.frame_metadata.frame_id,
            error=message, error_code=code,
        ))

    def _prepare(self, request: InferenceRequest) -> tuple[Any, FrameInfo]:
        info: list[FrameInfo] = []
        handler = self._handler

        def preprocess(frame: FrameView) -> Any:
            info.append(FrameInfo.of(frame))
            return handler.preprocess(frame, request)

        inputs = self._reader.read_camera(request.camera_id, request.frame_metadata, preprocess)
        return inputs, info[0]

    def _infer(self, inputs: list[Any]) -> list[Any]:
        try:
            outputs = self._handler.infer_batch(inputs)
            if len(outputs) != len(inputs):
                raise RuntimeError(f"infer_batch returned {len(outputs)} outputs for {len(inputs)} inputs")
            return list(outputs)
        except Exception as exc:
            if is_out_of_memory(exc):
                release_gpu_cache()  # what a batch of this size needed is not there: let singles try
            if len(inputs) == 1:
                return [_Failed(exc)]
            logger.warning("a batch of %d failed (%s: %s); running its inputs one at a time",
                           len(inputs), type(exc).__name__, exc)
        return [self._infer_one(one) for one in inputs]

    def _infer_one(self, inputs: Any) -> Any:
        try:
            (output,) = self._handler.infer_batch([inputs])
            return output
        except Exception as exc:
            return _Failed(exc)

    def _success(self, request: InferenceRequest, outputs: Any, inputs: Any, info: FrameInfo, received: float) -> bytes:
        detections = _as_detections(self._handler.postprocess(outputs, inputs, info, request))
        return encode_model(InferenceResponse(
            model_id=self._config.model_id, camera_id=request.camera_id, frame_id=request.frame_metadata.frame_id,
            detections=detections,
            metadata={
                "model_version": self._config.model_version,
                "device": self._device_name,
                "width": info.width,
                "height": info.height,
                "frame_timestamp_ns": info.timestamp_ns,
                "server_ms": round((time.perf_counter() - received) * 1000.0, 3),
            },
        ))

    def _failure(self, request: InferenceRequest, exc: BaseException, step: str) -> Outcome:
        if isinstance(exc, RequestError):
            return self.error(request, exc.code, exc.message), exc.code
        logger.error("%s failed on camera %s frame %s", step, request.camera_id, request.frame_metadata.frame_id,
                     exc_info=exc)
        return self.error(request, ErrorCode.INFERENCE_FAILED, f"{type(exc).__name__}: {exc}"), ErrorCode.INFERENCE_FAILED


class _Failed:
    """The model call failed for this input (kept apart from outputs, which may be anything)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


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
