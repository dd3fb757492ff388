"""models/face-detection: MTCNN through a real daemon on real photos, and its NMS on its own."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from ai_model_container.contract.schema import ErrorCode

from .model_photos import MODELS, photo

torch = pytest.importorskip("torch")
sys.path.insert(0, str(MODELS / "face-detection"))
from mtcnn_cascade import CascadeSettings, CpuImage, detect_faces, nms  # noqa: E402
from mtcnn_nets import ONet, PNet, RNet  # noqa: E402

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
    for bad in ({"min_face_size": 5}, {"min_confidence": "high"}, {"min_confidence": 1.5},
                {"pyramid_factor": 0.3}, {"pyramid_factor": "fine"}, {"pyramid_factor": 0.9}):
        response = ask(face_daemon, photo("astronaut.jpg"), bad)
        assert response.error_code == ErrorCode.INVALID_REQUEST, bad
        assert next(iter(bad)) in response.error


@pytest.fixture(scope="module")
def nets():
    weights = MODELS / "face-detection" / "weights"
    loaded = []
    for name, net in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)):
        module = net()
        module.load_state_dict(torch.load(str(weights / f"{name}.pt"), weights_only=True))
        loaded.append(module.eval())
    return tuple(loaded)


def test_the_opencv_cpu_path_finds_the_faces_the_torch_path_finds(nets):
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[104:616, 40:552] = photo("camera.jpg")
    canvas[104:616, 700:1212] = photo("astronaut.jpg")
    rgb = np.ascontiguousarray(canvas[..., ::-1])
    settings = CascadeSettings(min_face_size=20)
    with torch.inference_mode():
        reference = detect_faces(torch.from_numpy(rgb).permute(2, 0, 1).float(), nets, settings)
        fast = detect_faces(rgb, nets, settings)
    assert len(reference.boxes) == len(fast.boxes) == 2
    for box in reference.boxes.tolist():
        assert max(iou(box, other) for other in fast.boxes.tolist()) > 0.8


def test_the_cpu_pyramid_levels_are_the_sizes_asked_for():
    rgb = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8)
    image = CpuImage(rgb)
    for height, width in ((433, 769), (154, 274), (13, 23), (720, 1280)):
        assert tuple(image.level(height, width).shape) == (1, 3, height, width)
    assert len(image.octaves) == 6  # halvings down to the smallest level asked for, kept for reuse
    crops = image.crops([(1, 1, 48, 48), (100, 200, 110, 230)], 24)
    assert tuple(crops.shape) == (2, 3, 24, 24)
    assert torch.allclose(crops[0].mean(), torch.from_numpy(rgb[:48, :48]).float().mean(), atol=3)


def test_min_face_size_and_pyramid_factor_set_how_many_levels_p_net_sees(nets):
    rgb = np.zeros((720, 1280, 3), np.uint8)
    pnet, rnet, onet = nets
    levels = []

    class Spy(torch.nn.Module):
        def forward(self, x):
            levels.append(tuple(x.shape[-2:]))
            return pnet(x)

    def level_sizes(**settings):
        levels.clear()
        with torch.inference_mode():
            detect_faces(rgb, (Spy(), rnet, onet), CascadeSettings(**settings))
        return list(levels)

    default = level_sizes(min_face_size=30, pyramid_factor=0.6)
    assert default[0] == (289, 513)  # 12 / 30 of the frame, + 1 as the reference rounds
    assert len(level_sizes(min_face_size=20, pyramid_factor=0.709)) > len(default)
    assert level_sizes(min_face_size=20, pyramid_factor=0.709)[0] == (433, 769)
    assert len(level_sizes(min_face_size=30, pyramid_factor=0.5)) < len(default)
    assert min(min(size) for size in default) >= 12  # P-Net's window
