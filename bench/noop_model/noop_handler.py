"""A handler that does no work, so the benchmark sees only the runtime's own cost.

The runtime still resolves the frame reference, checks the slot record and
the seqlock around preprocess; preprocess just does not read a pixel.
"""

from __future__ import annotations

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest
from bench.payload import detections


class NoopHandler(InferenceHandler[None, None]):
    def load(self) -> None:
        self._detections = [Detection.model_validate(item) for item in detections()]

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> None:
        return None

    def infer(self, inputs: None) -> None:
        return inputs

    def postprocess(self, outputs: None, inputs: None, frame: FrameInfo, request: InferenceRequest) -> list[Detection]:
        return self._detections
