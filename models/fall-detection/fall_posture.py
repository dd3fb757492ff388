"""Posture from one person's 17 COCO keypoints: is the body axis upright or lying?

The rule is deliberately simple and explainable. The body axis runs from the
hips to the shoulders; its angle from vertical is near 0 degrees for a person
standing or sitting, near 90 for a person lying on the floor, and past 90 for
one upside down. Angles past ``fall_angle_deg`` count as a fall; the
probability ramps smoothly around it so a body at 50 degrees is reported as
uncertain rather than confidently upright.

When the hips are not visible (a portrait, a desk in the way) the axis runs
from the shoulders to the head instead; when neither is visible it falls back
to the box's aspect ratio, the weakest clue, and says so in ``source``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_HIP, RIGHT_HIP = 5, 6, 11, 12
HEAD = (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR)
SHOULDERS = (LEFT_SHOULDER, RIGHT_SHOULDER)
HIPS = (LEFT_HIP, RIGHT_HIP)

DEFAULT_FALL_ANGLE_DEG = 55.0
SOFTNESS_DEG = 8.0
DEFAULT_MIN_KEYPOINT_SCORE = 0.2

AxisSource = Literal["torso", "head", "box"]


@dataclass(frozen=True)
class Posture:
    angle_deg: float
    """Angle of the body axis from vertical: 0 upright, 90 lying, 180 upside down."""
    source: AxisSource
    fall_probability: float

    def is_fall(self) -> bool:
        return self.fall_probability >= 0.5


def _midpoint(keypoints: np.ndarray, indices: tuple[int, ...], min_score: float) -> Optional[np.ndarray]:
    visible = [index for index in indices if keypoints[index, 2] >= min_score]
    if not visible:
        return None
    return keypoints[visible, :2].mean(axis=0)


def _angle_from_vertical(lower: np.ndarray, upper: np.ndarray) -> float:
    dx, dy = upper - lower
    return math.degrees(math.atan2(abs(dx), -dy))  # image y grows downwards


def body_axis(keypoints: np.ndarray, box: tuple[float, float, float, float],
              min_score: float = DEFAULT_MIN_KEYPOINT_SCORE) -> tuple[float, AxisSource]:
    """The body axis angle and where it came from, from (17, 3) x/y/score keypoints in pixels."""
    shoulders = _midpoint(keypoints, SHOULDERS, min_score)
    hips = _midpoint(keypoints, HIPS, min_score)
    if shoulders is not None and hips is not None and np.linalg.norm(shoulders - hips) > 1.0:
        return _angle_from_vertical(hips, shoulders), "torso"
    head = _midpoint(keypoints, HEAD, min_score)
    if shoulders is not None and head is not None and np.linalg.norm(head - shoulders) > 1.0:
        return _angle_from_vertical(shoulders, head), "head"
    x_min, y_min, x_max, y_max = box
    return math.degrees(math.atan2(max(x_max - x_min, 0.0), max(y_max - y_min, 1e-6))), "box"


def classify_posture(keypoints: np.ndarray, box: tuple[float, float, float, float],
                     fall_angle_deg: float = DEFAULT_FALL_ANGLE_DEG,
                     min_score: float = DEFAULT_MIN_KEYPOINT_SCORE) -> Posture:
    angle, source = body_axis(keypoints, box, min_score)
    probability = 1.0 / (1.0 + math.exp(-(angle - fall_angle_deg) / SOFTNESS_DEG))
    return Posture(angle, source, probability)
