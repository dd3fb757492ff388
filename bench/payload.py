"""The one response both benchmark servers send: 10 detections, about 1.1 KB of JSON.

The runtime's no-op model returns these as Detection models; the baseline
server sends the same fields as a plain dict, so both answer with the same
bytes on the wire and the comparison is about the servers alone.
"""

from __future__ import annotations

from typing import Any

DETECTION_COUNT = 10
CLASSES = ["person", "car", "truck", "bicycle", "motorcycle", "bus", "dog", "cat", "backpack", "handbag"]
FRAME_WIDTH = 1920
FRAME_HEIGHT = 1080


def detections() -> list[dict[str, Any]]:
    """Ten fixed detections, spread over a 1920x1080 frame."""
    boxes = []
    for index in range(DETECTION_COUNT):
        x_min, y_min = 40.0 + 180.0 * index, 60.0 + 90.0 * index
        boxes.append({
            "class_id": index,
            "class_name": CLASSES[index],
            "confidence": round(0.5 + 0.045 * index, 3),
            "bbox": [x_min, y_min, x_min + 120.5, y_min + 240.25],
            "keypoints": None,
            "attributes": None,
        })
    return boxes
