"""models/fall-detection: real photos in, fall / no_fall out, through a real daemon.

There is no permissively licensed photo of a fallen person offline; the same
upright photos rotated by 90 degrees stand in for a person lying on the floor.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
import pytest

from ai_model_container.contract.schema import ErrorCode

from .model_photos import MODELS, photo

onnxruntime = pytest.importorskip("onnxruntime")

MODEL_DIR = MODELS / "fall-detection"
sys.path.insert(0, str(MODEL_DIR))
from fall_posture import body_axis, classify_posture  # noqa: E402

KEYPOINT_COUNT = 17


@pytest.fixture(scope="module")
def fall_daemon(serve_model):
    return serve_model("fall-detection")


def skeleton(shoulders, hips, head=None, score=0.9):
    """(17, 3) keypoints with only shoulders, hips and optionally the nose placed."""
    keypoints = np.zeros((KEYPOINT_COUNT, 3))
    keypoints[[5, 6], :2], keypoints[[5, 6], 2] = shoulders, score
    keypoints[[11, 12], :2], keypoints[[11, 12], 2] = hips, score
    if head is not None:
        keypoints[0] = (*head, score)
    return keypoints


def test_posture_rule_from_the_torso_axis():
    standing = classify_posture(skeleton([(100, 100), (140, 100)], [(105, 200), (135, 200)]), (90, 60, 150, 400))
    lying = classify_posture(skeleton([(300, 200), (300, 240)], [(200, 205), (200, 235)]), (100, 190, 420, 250))
    upside_down = classify_posture(skeleton([(100, 300), (140, 300)], [(105, 200), (135, 200)]), (90, 150, 150, 420))
    assert (standing.source, lying.source) == ("torso", "torso")
    assert standing.angle_deg == pytest.approx(0.0, abs=1.0) and not standing.is_fall()
    assert lying.angle_deg == pytest.approx(90.0, abs=1.0) and lying.is_fall()
    assert upside_down.angle_deg == pytest.approx(180.0, abs=1.0) and upside_down.is_fall()
    assert standing.fall_probability < 0.01 and lying.fall_probability > 0.98


def test_posture_falls_back_to_head_then_box_when_hips_are_hidden():
    hidden_hips = skeleton([(100, 100), (140, 100)], [(105, 200), (135, 200)], head=(120, 60))
    hidden_hips[[11, 12], 2] = 0.05
    assert body_axis(hidden_hips, (90, 40, 150, 300)) == (pytest.approx(0.0, abs=1.0), "head")
    nothing_visible = np.zeros((KEYPOINT_COUNT, 3))
    wide_angle, source = body_axis(nothing_visible, (0, 0, 300, 100))
    assert source == "box" and wide_angle > 70
    assert classify_posture(nothing_visible, (0, 0, 60, 200)).is_fall() is False


def test_the_threshold_moves_with_fall_angle():
    leaning = skeleton([(160, 100), (200, 100)], [(105, 200), (135, 200)])  # about 30 degrees
    assert not classify_posture(leaning, (90, 60, 210, 400)).is_fall()
    assert classify_posture(leaning, (90, 60, 210, 400), fall_angle_deg=20).is_fall()


def test_two_standing_people_are_found_upright(fall_daemon, ask):
    response = ask(fall_daemon, photo("basketball.jpg"))
    assert response.error_code is None, response.error
    people = sorted(response.detections, key=lambda d: d.bbox[0])
    assert [d.class_name for d in people] == ["no_fall", "no_fall"]
    left, right = people
    assert left.bbox[0] < 100 and left.bbox[2] < 250 and right.bbox[0] > 350  # one man on each side
    for person in people:
        # The man on the right is cut by the frame at the hips: his axis may come from the head instead.
        assert person.confidence > 0.9 and person.attributes["angle_source"] in ("torso", "head")
        assert person.attributes["body_angle_deg"] < 30
        assert len(person.keypoints) == KEYPOINT_COUNT
        assert person.keypoints[0].name == "nose" and person.keypoints[-1].name == "right_ankle"
        x_min, y_min, x_max, y_max = person.bbox
        assert all(x_min - 20 <= k.x <= x_max + 20 and y_min - 20 <= k.y <= y_max + 20
                   for k in person.keypoints if k.score > 0.3)


@pytest.mark.parametrize("name", ["basketball.jpg", "astronaut.jpg"])
@pytest.mark.parametrize("rotation", [cv2.ROTATE_90_CLOCKWISE, cv2.ROTATE_90_COUNTERCLOCKWISE])
def test_the_same_people_rotated_to_lying_are_falls(fall_daemon, ask, name, rotation):
    upright = ask(fall_daemon, photo(name))
    lying = ask(fall_daemon, photo(name, rotation))
    assert upright.detections and all(d.class_name == "no_fall" for d in upright.detections)
    assert lying.detections and all(d.class_name == "fall" for d in lying.detections)
    assert all(d.attributes["body_angle_deg"] > 60 and d.confidence > 0.8 for d in lying.detections)


def test_a_standing_and_a_lying_person_in_one_frame_get_different_answers(fall_daemon, ask):
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[104:616, 40:552] = photo("camera.jpg")
    canvas[104:616, 700:1212] = photo("astronaut.jpg", cv2.ROTATE_90_CLOCKWISE)
    response = ask(fall_daemon, canvas)
    people = sorted(response.detections, key=lambda d: d.bbox[0])
    assert [d.class_name for d in people] == ["no_fall", "fall"]
    standing, lying = people
    assert standing.bbox[2] < 640 and lying.bbox[0] > 640
    assert lying.bbox[2] - lying.bbox[0] > lying.bbox[3] - lying.bbox[1]  # a lying body is wider than tall


def test_an_empty_scene_has_no_people(fall_daemon, ask):
    assert ask(fall_daemon, np.zeros((480, 640, 3), np.uint8)).detections == []
    assert ask(fall_daemon, np.full((480, 640, 3), 128, np.uint8)).detections == []


def test_options_change_the_answer_and_bad_options_are_refused(fall_daemon, ask):
    strict = ask(fall_daemon, photo("basketball.jpg"), {"min_person_score": 0.99})
    assert strict.error_code is None and strict.detections == []
    for bad in ({"fall_angle_deg": "steep"}, {"fall_angle_deg": 500}, {"min_person_score": True},
                {"min_person_score": 0.01}):
        response = ask(fall_daemon, photo("basketball.jpg"), bad)
        assert response.error_code == ErrorCode.INVALID_REQUEST, bad
        assert next(iter(bad)) in response.error


def test_on_a_gpu_the_handler_asks_onnxruntime_for_cuda_first(monkeypatch):
    """The GPU path, as far as a machine without a GPU can check it: the session is asked for CUDA first."""
    from ai_model_container.contract.model_config import load_model_config
    from ai_model_container.daemon.container import load_handler
    from ai_model_container.device import Device

    asked = []
    monkeypatch.setattr(onnxruntime, "get_available_providers",
                        lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    real_session = onnxruntime.InferenceSession

    def session(path, sess_options=None, providers=None):
        asked.append(list(providers))
        return real_session(path, sess_options=sess_options, providers=["CPUExecutionProvider"])

    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    config = load_model_config(MODEL_DIR / "model.yaml")
    handler = load_handler(config, MODEL_DIR, Device("cuda", "cuda:0 (test)"))
    handler.load()
    assert asked == [["CUDAExecutionProvider", "CPUExecutionProvider"]]
    assert handler.movenet.intra_op_threads == 0  # onnxruntime's default on a GPU; one thread per request on a CPU
