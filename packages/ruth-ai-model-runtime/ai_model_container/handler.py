"""The base class a model author fills in: load, warm up, preprocess, infer, postprocess.

The runtime calls the steps in this order for every request:

1. ``preprocess(frame, request)`` while the frame is still a read-only view
   into shared memory: make the model's input from it here (this is the one
   copy the reader allows). The runtime checks the slot's seqlock afterwards.
2. ``infer(inputs)``: the model itself, on one input. A model that runs a
   batch as cheaply as one input overrides ``infer_batch(inputs)`` instead
   (one output per input, in order); the runtime batches requests for it when
   model.yaml has a ``batching`` block. Override either one; each defaults to
   the other.
3. ``postprocess(outputs, inputs, frame, request)``: detections in pixels of the
   source frame (``frame.width`` x ``frame.height``). The runtime hands back
   this request's own ``inputs``, so whatever preprocess computed (a letterbox,
   a threshold read from ``request``) needs no wrapper to travel through infer.

``load`` runs once at startup, before the socket exists; ``warmup`` right after
it. One handler instance serves all requests concurrently (up to
``limits.max_concurrent_requests``), so keep per-request data in what the
steps return, never on ``self``. An exception in any step becomes an
INFERENCE_FAILED response and the daemon carries on; raise ``RequestError`` to
choose the code yourself.

Type the subclass with its input and output types, ``InferenceHandler[Inputs,
Outputs]``, so a type checker follows the data from one step to the next.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, Sequence, TypeVar

import numpy as np

from ai_model_container.contract.frame_reader import FrameView
from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import Detection, InferenceRequest
from ai_model_container.device import Device

WARMUP_RESOLUTION = (640, 480)

Inputs = TypeVar("Inputs")
Outputs = TypeVar("Outputs")


@dataclass(slots=True)
class FrameInfo:
    """What postprocess may know about the frame once its pixels are gone."""

    camera_id: str
    frame_id: int
    timestamp_ns: int
    width: int
    height: int

    @classmethod
    def of(cls, frame: FrameView) -> "FrameInfo":
        return cls(frame.camera_id, frame.frame_id, frame.timestamp_ns, frame.width, frame.height)


class InferenceHandler(ABC, Generic[Inputs, Outputs]):
    """One model's inference logic. Subclass it and name the subclass in model.yaml's entry_point."""

    def __init__(self, config: ModelConfig, model_dir: Path, device: Device) -> None:
        cls = type(self)
        if cls.infer is InferenceHandler.infer and cls.infer_batch is InferenceHandler.infer_batch:
            raise TypeError(f"{cls.__name__} must override infer or infer_batch (each defaults to the other)")
        self.config = config
        self.model_dir = model_dir
        self.device = device

    def load(self) -> None:
        """Load weights onto ``self.device``; called once, before serving. Weights are already verified."""

    def warmup(self) -> None:
        """Run one synthetic frame through the pipeline so the first real request is not slow."""
        if self.config.expected_resolution is not None:
            width, height = self.config.expected_resolution.width, self.config.expected_resolution.height
        else:
            width, height = WARMUP_RESOLUTION
        nv12 = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        frame = FrameView("warmup", 1, 0, width, height, nv12)
        request = InferenceRequest(
            frame_reference="/dev/shm/vas_frames_warmup",
            frame_metadata={"frame_id": 1, "width": width, "height": height},
            camera_id="warmup", model_id=self.config.model_id, timestamp=0.0,
        )
        inputs = self.preprocess(frame, request)
        (outputs,) = self.infer_batch([inputs])
        self.postprocess(outputs, inputs, FrameInfo.of(frame), request)

    @abstractmethod
    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Inputs:
        """Turn the shared-memory frame into the model's input (the view dies when this returns)."""

    def infer(self, inputs: Inputs) -> Outputs:
        """Run the model on one input."""
        (outputs,) = self.infer_batch([inputs])
        return outputs

    def infer_batch(self, inputs: list[Inputs]) -> list[Outputs]:
        """Run the model once on several inputs; one output per input, in the same order."""
        return [self.infer(one) for one in inputs]

    @abstractmethod
    def postprocess(self, outputs: Outputs, inputs: Inputs, frame: FrameInfo,
                    request: InferenceRequest) -> Sequence[Detection]:
        """Turn this request's model outputs into detections in source-frame pixels."""

    def close(self) -> None:
        """Release what ``load`` acquired; called once at shutdown."""

    def class_name(self, class_id: int) -> str:
        return self.config.output_schema.classes[class_id]
