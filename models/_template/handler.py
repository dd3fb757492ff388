"""The model's handler: replace the body of each method with your model's code.

For every request the runtime calls ``preprocess`` (the frame is a read-only
view into shared memory: make your input from it and return), then the model
(``infer_batch`` here: its ONNX graph takes a batch of any size, and model.yaml's
``batching`` block lets the runtime gather up to 8 requests of any cameras into
one call), then ``postprocess`` with this request's outputs and inputs
(detections in pixels of the source frame). ``load`` runs once at
startup, after the weights listed in model.yaml passed their sha256 check.

This template's model is weights/bright_spots.onnx (see make_weights.py): it
scores 4x4 cells of a 320x320 input by brightness; cells above
``min_confidence`` are grouped into boxes. Per-request option:
``min_confidence`` (0-1, default 0.5).

For a PyTorch model, use ai_model_container.backends.load_state_dict or
load_torchscript in ``load`` and frame_to_rgb_tensor + letterbox_tensor in
``preprocess`` (the conversion then runs on the GPU when there is one).
"""

from __future__ import annotations

import cv2
import numpy as np

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest, float_option
from ai_model_container.backends import Letterbox, letterbox_image, onnx_session

INPUT_SIZE = 320
CELL = 4  # input pixels per cell of the model's score map


class ModelHandler(InferenceHandler[np.ndarray, np.ndarray]):
    def load(self) -> None:
        self.session = onnx_session(self.model_dir / self.config.weights[0].path, self.device)
        self.input_name = self.session.get_inputs()[0].name

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> np.ndarray:
        image, _ = letterbox_image(frame.to_rgb(), INPUT_SIZE, INPUT_SIZE)
        return image.transpose(2, 0, 1).astype(np.float32)

    def infer_batch(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        (scores,) = self.session.run(None, {self.input_name: np.stack(inputs)})
        return list(scores[:, 0])

    def postprocess(self, scores: np.ndarray, inputs: np.ndarray, frame: FrameInfo,
                    request: InferenceRequest) -> list[Detection]:
        min_confidence = float_option(request, "min_confidence", 0.5, 0.0, 1.0)
        geometry = Letterbox.fit(frame.width, frame.height, INPUT_SIZE, INPUT_SIZE)
        count, labels, stats, _ = cv2.connectedComponentsWithStats((scores >= min_confidence).astype(np.uint8))
        detections = []
        for label in range(1, count):
            x, y, width, height, _ = stats[label]
            box = geometry.box_to_source((x * CELL, y * CELL, (x + width) * CELL, (y + height) * CELL))
            confidence = float(scores[labels == label].mean())
            detections.append(Detection(class_id=0, class_name=self.class_name(0),
                                        confidence=round(min(confidence, 1.0), 4), bbox=box))
        return detections
