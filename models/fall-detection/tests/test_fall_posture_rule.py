"""fall_posture: a fall needs a torso that belongs to one body, not just a lying angle."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from fall_posture import DEFAULT_FALL_ANGLE_DEG, SOFTNESS_DEG, UNSURE_PROBABILITY, classify_posture, torso_problem  # noqa: E402

# Keypoints of a whole person lying on the floor, head on the left, seen from the side (x, y in pixels).
LYING = {
    "nose": (110, 300), "left_eye": (112, 294), "right_eye": (112, 296), "left_ear": (120, 290),
    "right_ear": (120, 292), "left_shoulder": (160, 290), "right_shoulder": (160, 318),
    "left_elbow": (210, 286), "right_elbow": (210, 322), "left_wrist": (255, 284), "right_wrist": (255, 324),
    "left_hip": (270, 294), "right_hip": (270, 314), "left_knee": (360, 296), "right_knee": (360, 312),
    "left_ankle": (450, 298), "right_ankle": (450, 310),
}
NAMES = list(LYING)
LYING_BOX = (100, 280, 460, 330)


def skeleton(points: dict, score: float = 0.8) -> np.ndarray:
    return np.array([(*points[name], score) for name in NAMES], dtype=float)


def standing(points: dict) -> dict:
    """The lying person stood up: turned by 90 degrees about the hips."""
    return {name: (290 + (y - 304), x + 34) for name, (x, y) in points.items()}


def test_a_whole_lying_body_is_a_fall_and_the_same_body_standing_is_not():
    lying = classify_posture(skeleton(LYING), LYING_BOX)
    assert lying.is_fall() and lying.check == "ok" and lying.source == "torso"
    assert lying.angle_deg == pytest.approx(90, abs=5)
    upright = skeleton(standing(LYING))
    up = classify_posture(upright, (270, 100, 330, 460))
    assert not up.is_fall() and up.angle_deg < 10 and up.fall_probability < 0.01


def test_shoulders_on_one_walker_and_hips_on_another_are_not_a_fall():
    # Two people side by side merged into one skeleton: each shoulder and hip on a different body.
    merged = dict(LYING, left_shoulder=(200, 150), right_shoulder=(260, 330), left_hip=(330, 160),
                  right_hip=(330, 330))
    points = skeleton(merged)
    angle_alone = classify_posture(points, (150, 100, 380, 360))
    assert angle_alone.angle_deg > 60
    assert not angle_alone.is_fall()
    assert angle_alone.check == "shoulders or hips wider than one body"
    assert angle_alone.fall_probability == pytest.approx(UNSURE_PROBABILITY)  # no_fall at 0.55: "cannot tell"


def test_a_torso_squashed_into_a_blob_is_not_a_fall():
    blob = dict(LYING, left_shoulder=(200, 300), right_shoulder=(202, 306), left_hip=(208, 301), right_hip=(209, 305))
    assert torso_problem(skeleton(blob), LYING_BOX) == "torso too short for the body"


def test_a_head_on_the_hip_side_or_knees_at_the_shoulders_are_not_one_body():
    head_behind = dict(LYING, nose=(300, 300), left_eye=(300, 296), right_eye=(300, 298), left_ear=(305, 296),
                       right_ear=(305, 298))
    assert torso_problem(skeleton(head_behind), LYING_BOX) == "head below the shoulders along the torso"
    knees_forward = dict(LYING, left_knee=(150, 296), right_knee=(150, 312))
    assert torso_problem(skeleton(knees_forward), LYING_BOX) == "knees above the hips along the torso"
    curled = dict(LYING, left_knee=(250, 250), right_knee=(250, 262), left_ankle=(320, 250), right_ankle=(320, 262))
    assert torso_problem(skeleton(curled), LYING_BOX) is None  # knees level with the hips: curled up, still one body


def test_a_limb_reaching_into_another_body_is_not_one_body():
    long_leg = dict(LYING, left_ankle=(600, 298))
    assert torso_problem(skeleton(long_leg), (100, 280, 610, 330)) == "a limb longer than one body allows"


def test_without_hips_there_is_no_fall_whatever_the_angle():
    points = skeleton(LYING)
    points[[11, 12], 2] = 0.05  # hips not seen: the axis runs shoulders to head
    posture = classify_posture(points, LYING_BOX)
    assert posture.source == "head" and posture.angle_deg > 60
    assert not posture.is_fall() and posture.check == "torso not seen"


def test_upright_walkers_from_vtest_whose_angle_looks_lying_are_never_falls():
    data = json.loads((HERE / "data" / "vtest_upright_skeletons.json").read_text())["skeletons"]
    angle_says_fall = 0
    for item in data:
        keypoints, box = np.array(item["keypoints"]), tuple(item["box"])
        posture = classify_posture(keypoints, box)
        angle_says_fall += 1 / (1 + math.exp(-(posture.angle_deg - DEFAULT_FALL_ANGLE_DEG) / SOFTNESS_DEG)) >= 0.5
        assert not posture.is_fall(), (item["frame"], posture)
    assert angle_says_fall >= 7  # the angle alone calls these falls: the checks are what saves them
