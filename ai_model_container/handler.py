"""The base class a model author fills in: load, warm up, preprocess, infer, postprocess.

The runtime calls the steps in this order for every request:

1. ``preprocess(frame, request)`` while the frame is still a read-only view
   into shared memory: convert it to the model's input here (this is the one
   copy the reader allows). The runtime checks the slot's seqlock afterwards.
2. ``infer(inputs)``: the model itself.
3. ``postprocess(outputs, frame_info, request)``: detections in pixels of the
   source frame (``frame_info.width`` x ``frame_info.height``).

``load`` runs once at startup, before the socket exists; ``warmup`` right after
it. One handler instance serves all requests concurrently (up to
``limits.max_concurrent_requests``), so keep per-request data in locals, never
on ``self``. An exception in any step becomes an INFERENCE_FAILED response and
the daemon carries on; raise ``RequestError`` to choose the code yourself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .device import Device
from .frame_reader import FrameView
from .model_config import ModelConfig
from .schema import Detection, InferenceRequest

WARMUP_RESOLUTION = (640, 480)


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


class InferenceHandler(ABC):
    """One model's inference logic. Subclass it and name the subclass in model.yaml's entry_point."""

    def __init__(self, config: ModelConfig, model_dir: Path, device: Device) -> None:
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
        self.postprocess(self.infer(self.preprocess(frame, request)), FrameInfo.of(frame), request)

    @abstractmethod
    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Any:
        """Turn the shared-memory frame into the model's input (the view dies when this returns)."""

    @abstractmethod
    def infer(self, inputs: Any) -> Any:
        """Run the model."""

    @abstractmethod
    def postprocess(self, outputs: Any, frame: FrameInfo, request: InferenceRequest) -> Sequence[Detection]:
        """Turn model outputs into detections in source-frame pixels."""

    def close(self) -> None:
        """Release what ``load`` acquired; called once at shutdown."""

    def class_name(self, class_id: int) -> str:
        return self.config.output_schema.classes[class_id]
