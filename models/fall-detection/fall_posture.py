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

A ``fall`` needs more than an angle: it needs a torso that belongs to one body
(``torso_problem``). MoveNet on a small or half-hidden person, or on two
people overlapping, can return a skeleton whose shoulders and hips sit in one
blob, or on two different bodies; its axis then points anywhere. Such a
skeleton is never a fall: its probability is held just under 0.5 (``no_fall``
with a confidence near 0.5, i.e. "cannot tell") and ``check`` says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Optional

import numpy as np

NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR = 0, 1, 2, 3, 4
LEFT_SHOULDER, RIGHT_SHOULDER, LEFT_ELBOW, RIGHT_ELBOW, LEFT_WRIST, RIGHT_WRIST = 5, 6, 7, 8, 9, 10
LEFT_HIP, RIGHT_HIP, LEFT_KNEE, RIGHT_KNEE, LEFT_ANKLE, RIGHT_ANKLE = 11, 12, 13, 14, 15, 16
HEAD = (NOSE, LEFT_EYE, RIGHT_EYE, LEFT_EAR, RIGHT_EAR)
SHOULDERS = (LEFT_SHOULDER, RIGHT_SHOULDER)
HIPS = (LEFT_HIP, RIGHT_HIP)
KNEES = (LEFT_KNEE, RIGHT_KNEE)
LIMBS = ((LEFT_SHOULDER, LEFT_ELBOW), (RIGHT_SHOULDER, RIGHT_ELBOW), (LEFT_ELBOW, LEFT_WRIST),
         (RIGHT_ELBOW, RIGHT_WRIST), (LEFT_HIP, LEFT_KNEE), (RIGHT_HIP, RIGHT_KNEE),
         (LEFT_KNEE, LEFT_ANKLE), (RIGHT_KNEE, RIGHT_ANKLE))

DEFAULT_FALL_ANGLE_DEG = 55.0
SOFTNESS_DEG = 8.0
DEFAULT_MIN_KEYPOINT_SCORE = 0.2
TORSO_MIN_SCORE = 0.25
"""The four torso keypoints (shoulders, hips) must score this on average for their torso to support a fall,
with at least one shoulder and one hip at DEFAULT_MIN_KEYPOINT_SCORE and none under TORSO_FLOOR_SCORE."""
TORSO_FLOOR_SCORE = 0.1
MIN_TORSO_SHARE = 0.2
"""Shoulder-to-hip length over the box's longer side: about 0.3 for a whole body, any pose."""
MAX_WIDTH_PER_TORSO = 1.3
"""Shoulder (or hip) width over torso length: about 0.5-0.9 for one body; two bodies side by side give more."""
MAX_LIMB_PER_TORSO = 1.8
"""Longest limb segment over torso length: thighs and shins are about one torso; a limb reaching into a
second body is longer."""
KNEE_SLACK = 0.6
"""How far (in torsos) the knees may sit back towards the shoulders before the skeleton is inconsistent."""
UNSURE_PROBABILITY = 0.45

AxisSource = Literal["torso", "head", "box"]


@dataclass(frozen=True)
class Posture:
    angle_deg: float
    """Angle of the body axis from vertical: 0 upright, 90 lying, 180 upside down."""
    source: AxisSource
    fall_probability: float
    check: str = "ok"
    """``ok``, or why this skeleton cannot support a fall (then ``fall_probability`` <= 0.45)."""

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


def _visible(keypoints: np.ndarray, index: int, min_score: float) -> bool:
    return bool(keypoints[index, 2] >= min_score)


def torso_problem(keypoints: np.ndarray, box: tuple[float, float, float, float],
                  min_score: float = TORSO_MIN_SCORE) -> Optional[str]:
    """Why this skeleton's torso cannot support a fall, or None when it is one body's torso.

    Checks, in order: shoulders and hips seen (``TORSO_MIN_SCORE``); the torso long enough
    for the box (not a blob); shoulders and hips no wider than one body; the
    head beyond the shoulders, and the knees not back towards the shoulders,
    along the torso where they are seen; no limb segment longer than a body allows.
    """
    torso_scores = keypoints[list(SHOULDERS + HIPS), 2]
    if (torso_scores.min() < TORSO_FLOOR_SCORE or torso_scores.mean() < min_score
            or not any(_visible(keypoints, index, DEFAULT_MIN_KEYPOINT_SCORE) for index in SHOULDERS)
            or not any(_visible(keypoints, index, DEFAULT_MIN_KEYPOINT_SCORE) for index in HIPS)):
        return "torso not seen"
    points = keypoints[:, :2]
    shoulders = points[list(SHOULDERS)].mean(axis=0)
    hips = points[list(HIPS)].mean(axis=0)
    axis = shoulders - hips
    torso = float(np.linalg.norm(axis))
    x_min, y_min, x_max, y_max = box
    if torso < MIN_TORSO_SHARE * max(x_max - x_min, y_max - y_min, 1.0):
        return "torso too short for the body"
    shoulder_width = float(np.linalg.norm(points[LEFT_SHOULDER] - points[RIGHT_SHOULDER]))
    hip_width = float(np.linalg.norm(points[LEFT_HIP] - points[RIGHT_HIP]))
    if max(shoulder_width, hip_width) > MAX_WIDTH_PER_TORSO * torso:
        return "shoulders or hips wider than one body"
    head = _midpoint(keypoints, HEAD, min_score)
    if head is not None and float(np.dot(head - shoulders, axis)) < 0:
        return "head below the shoulders along the torso"
    knees = _midpoint(keypoints, KNEES, min_score)
    # Knees may come level with the hips (sitting, curled up), not well back towards the shoulders.
    if knees is not None and float(np.dot(knees - hips, -axis)) < -KNEE_SLACK * torso * torso:
        return "knees above the hips along the torso"
    for start, end in LIMBS:
        if _visible(keypoints, start, min_score) and _visible(keypoints, end, min_score):
            if float(np.linalg.norm(points[start] - points[end])) > MAX_LIMB_PER_TORSO * torso:
                return "a limb longer than one body allows"
    return None


def classify_posture(keypoints: np.ndarray, box: tuple[float, float, float, float],
                     fall_angle_deg: float = DEFAULT_FALL_ANGLE_DEG,
                     min_score: float = DEFAULT_MIN_KEYPOINT_SCORE) -> Posture:
    angle, source = body_axis(keypoints, box, min_score)
    probability = 1.0 / (1.0 + math.exp(-(angle - fall_angle_deg) / SOFTNESS_DEG))
    if probability < 0.5:
        return Posture(angle, source, probability)
    problem = torso_problem(keypoints, box)
    if problem is None:
        return Posture(angle, source, probability)
    return Posture(angle, source, min(probability, UNSURE_PROBABILITY), problem)
