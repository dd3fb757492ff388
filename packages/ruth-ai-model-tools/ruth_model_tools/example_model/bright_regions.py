"""Example handler: connected regions of the luma plane brighter than a threshold.

Reads only the Y plane (no colour conversion needed), at a quarter of the
resolution, and scales boxes back to source pixels. Per-request options:
``threshold`` (0-255, default 200) and ``min_area`` (source pixels, default 64).
"""

from __future__ import annotations

import cv2
import numpy as np

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest, int_option

SCALE = 4
Region = tuple[int, int, int, int, int, float]
"""x, y, width, height and area in quarter-resolution pixels, and mean brightness 0..1."""


class BrightRegionHandler(InferenceHandler[np.ndarray, list[Region]]):
    def preprocess(self, frame: FrameView, request: InferenceRequest) -> np.ndarray:
        threshold = int_option(request, "threshold", 200, 0, 255)
        small = cv2.resize(frame.y, (frame.width // SCALE, frame.height // SCALE), interpolation=cv2.INTER_AREA)
        _, mask = cv2.threshold(small, threshold, 255, cv2.THRESH_BINARY)
        return np.stack([small, mask])

    def infer(self, inputs: np.ndarray) -> list[Region]:
        small, mask = inputs
        count, _, boxes, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        return [(int(x), int(y), int(w), int(h), int(area), float(np.mean(small[y:y + h, x:x + w])) / 255.0)
                for x, y, w, h, area in boxes[1:count]]

    def postprocess(self, outputs: list[Region], inputs: np.ndarray, frame: FrameInfo,
                    request: InferenceRequest) -> list[Detection]:
        min_area = int_option(request, "min_area", 64, 0, frame.width * frame.height)
        return [
            Detection(
                class_id=0, class_name=self.class_name(0), confidence=round(min(brightness, 1.0), 4),
                bbox=(float(x * SCALE), float(y * SCALE), float(min((x + w) * SCALE, frame.width)),
                      float(min((y + h) * SCALE, frame.height))),
            )
            for x, y, w, h, area, brightness in outputs
            if area * SCALE * SCALE >= min_area
        ]
