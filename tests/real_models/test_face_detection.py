"""models/face-detection: MTCNN through a real daemon on real photos, and its NMS on its own."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ai_model_container.contract.schema import ErrorCode

from .model_photos import MODELS, photo

torch = pytest.importorskip("torch")
sys.path.insert(0, str(MODELS / "face-detection"))
from mtcnn_cascade import nms  # noqa: E402

# Where the faces are, measured by hand on the photos (x_min, y_min, x_max, y_max).
ASTRONAUT_FACE = (185, 75, 265, 175)
CAMERAMAN_FACE = (205, 120, 255, 190)


@pytest.fixture(scope="module")
def face_daemon(serve_model):
    return serve_model("face-detection")


def iou(a, b) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    return intersection / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection)


def shifted(box, dx, dy):
    return (box[0] + dx, box[1] + dy, box[2] + dx, box[3] + dy)


def test_nms_keeps_the_best_of_overlapping_boxes_and_separate_ones():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [2, 2, 5, 5]], dtype=torch.float32)
    scores = torch.tensor([0.8, 0.9, 0.7, 0.95])
    assert nms(boxes, scores, 0.5).tolist() == [3, 1, 2]  # the small nested box has a low IoU: kept
    assert nms(boxes, scores, 0.5, overlap="min").tolist() == [3, 2]  # boxes around the best one: gone
    assert nms(boxes[:0], scores[:0], 0.5).tolist() == []


def test_the_astronaut_has_one_face_with_landmarks_on_it(face_daemon, ask):
    response = ask(face_daemon, photo("astronaut.jpg"))
    assert response.error_code is None, response.error
    (face,) = response.detections
    assert face.class_name == "face" and face.confidence > 0.95
    assert iou(face.bbox, ASTRONAUT_FACE) > 0.6, face.bbox
    names = [k.name for k in face.keypoints]
    assert names == ["left_eye", "right_eye", "nose", "mouth_left", "mouth_right"]
    x_min, y_min, x_max, y_max = face.bbox
    assert all(x_min <= k.x <= x_max and y_min <= k.y <= y_max for k in face.keypoints)
    left_eye, right_eye, nose, mouth_left, _ = face.keypoints
    assert left_eye.x < right_eye.x and max(left_eye.y, right_eye.y) < nose.y < mouth_left.y


def test_two_people_on_one_frame_give_two_faces_in_the_right_places(face_daemon, ask):
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[104:616, 40:552] = photo("camera.jpg")
    canvas[104:616, 700:1212] = photo("astronaut.jpg")
    response = ask(face_daemon, canvas)
    faces = sorted(response.detections, key=lambda d: d.bbox[0])
    assert len(faces) == 2, response.detections
    assert iou(faces[0].bbox, shifted(CAMERAMAN_FACE, 40, 104)) > 0.5, faces[0].bbox
    assert iou(faces[1].bbox, shifted(ASTRONAUT_FACE, 700, 104)) > 0.6, faces[1].bbox


@pytest.mark.parametrize("value", [0, 128, 255])
def test_a_blank_frame_has_no_faces(face_daemon, ask, value):
    response = ask(face_daemon, np.full((480, 640, 3), value, np.uint8))
    assert response.error_code is None and response.detections == []


def test_options_change_the_answer_and_bad_options_are_refused(face_daemon, ask):
    only_large = ask(face_daemon, photo("astronaut.jpg"), {"min_face_size": 300})
    assert only_large.error_code is None and only_large.detections == []  # the face is about 90 pixels
    for bad in ({"min_face_size": 5}, {"min_confidence": "high"}, {"min_confidence": 1.5}):
        response = ask(face_daemon, photo("astronaut.jpg"), bad)
        assert response.error_code == ErrorCode.INVALID_REQUEST, bad
        assert next(iter(bad)) in response.error
