"""The model's handler: replace the body of each method with your model's code.

The runtime calls, for every request: ``preprocess`` (the frame is a read-only
view into shared memory: make your input from it and return), ``infer`` (the
model), ``postprocess`` (detections in pixels of the source frame). ``load``
runs once at startup, after the weights listed in model.yaml passed their
sha256 check. One instance serves concurrent requests: keep per-request data
in locals and in what the methods return, never on ``self``.

This template's model is weights/bright_spots.onnx (see make_weights.py): it
scores 4x4 cells of a 320x320 input by brightness; cells above
``min_confidence`` are grouped into boxes. Per-request option:
``min_confidence`` (0-1, default 0.5).

For a PyTorch model, use ai_model_container.backends.load_state_dict or
load_torchscript in ``load`` and frame_to_rgb_tensor + letterbox_tensor in
``preprocess`` (the conversion then runs on the GPU when there is one).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest
from ai_model_container.backends import Letterbox, letterbox_image, onnx_session
from ai_model_container.request_options import float_option

INPUT_SIZE = 320
CELL = 4  # input pixels per cell of the model's score map


@dataclass(frozen=True)
class Prepared:
    tensor: np.ndarray
    geometry: Letterbox
    min_confidence: float


@dataclass(frozen=True)
class Scored:
    scores: np.ndarray
    prepared: Prepared


class ModelHandler(InferenceHandler):
    def load(self) -> None:
        self.session = onnx_session(self.model_dir / self.config.weights[0].path, self.device)
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Prepared:
        min_confidence = float_option(request, "min_confidence", 0.5, 0.0, 1.0)
        image, geometry = letterbox_image(frame.to_rgb(), INPUT_SIZE, INPUT_SIZE)
        tensor = np.ascontiguousarray(image.transpose(2, 0, 1)[np.newaxis], dtype=np.float32)
        return Prepared(tensor, geometry, min_confidence)

    def infer(self, inputs: Prepared) -> Scored:
        (scores,) = self.session.run(None, {self.input_name: inputs.tensor})
        return Scored(scores[0, 0], inputs)

    def postprocess(self, outputs: Scored, frame: FrameInfo, request: InferenceRequest) -> list[Detection]:
        prepared = outputs.prepared
        mask = (outputs.scores >= prepared.min_confidence).astype(np.uint8)
        count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        detections = []
        for label in range(1, count):
            x, y, width, height, _ = stats[label]
            box = prepared.geometry.box_to_source((x * CELL, y * CELL, (x + width) * CELL, (y + height) * CELL))
            confidence = float(outputs.scores[labels == label].mean())
            detections.append(Detection(class_id=0, class_name=self.class_name(0),
                                        confidence=round(min(confidence, 1.0), 4), bbox=box))
        return detections
