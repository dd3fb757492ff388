"""Example handler: connected regions of the luma plane brighter than a threshold.

Reads only the Y plane (no colour conversion needed), at a quarter of the
resolution, and scales boxes back to source pixels. Per-request options:
``threshold`` (0-255, default 200) and ``min_area`` (source pixels, default 64).
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest

SCALE = 4


class BrightRegionHandler(InferenceHandler):
    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Any:
        small = cv2.resize(frame.y, (frame.width // SCALE, frame.height // SCALE), interpolation=cv2.INTER_AREA)
        threshold = int(request.config.get("threshold", 200))
        min_area = int(request.config.get("min_area", 64))
        return small, threshold, min_area

    def infer(self, inputs: Any) -> Any:
        small, threshold, min_area = inputs
        _, mask = cv2.threshold(small, threshold, 255, cv2.THRESH_BINARY)
        count, _, boxes, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
        regions = []
        for x, y, w, h, area in boxes[1:count]:
            if area * SCALE * SCALE < min_area:
                continue
            brightness = float(np.mean(small[y:y + h, x:x + w])) / 255.0
            regions.append((int(x), int(y), int(w), int(h), brightness))
        return regions

    def postprocess(self, outputs: Any, frame: FrameInfo, request: InferenceRequest) -> list[Detection]:
        return [
            Detection(
                class_id=0, class_name=self.class_name(0), confidence=round(min(brightness, 1.0), 4),
                bbox=(float(x * SCALE), float(y * SCALE), float(min((x + w) * SCALE, frame.width)),
                      float(min((y + h) * SCALE, frame.height))),
            )
            for x, y, w, h, brightness in outputs
        ]
