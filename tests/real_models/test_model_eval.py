"""The models/eval evaluation on a subset of the labelled sets: fails when a model drops below its goal.

Runs each model's handler as the daemon loads it, on NV12 frames (models/eval/evaluate.py). Needs the
Debian packages opencv-doc (vtest.avi, photos) and labelme-examples (photos with person boxes), and
scikit-image for LFW; a set whose files are missing is skipped, not passed.
"""

from __future__ import annotations

import sys

import pytest

from .model_photos import MODELS

sys.path.insert(0, str(MODELS / "eval"))
from datasets import SetUnavailable, face_photos, indoor_photos, lfw_faces, lfw_nonfaces, lying_standin, vtest_street  # noqa: E402
from evaluate import HandlerRunner, evaluate_set, video_falls  # noqa: E402

pytestmark = pytest.mark.slow  # 10-40 s each on a loaded 2-core machine

RECALL_GOAL, PRECISION_GOAL = 0.85, 0.9


def load(make):
    try:
        return make()
    except SetUnavailable as reason:
        pytest.skip(str(reason))


@pytest.fixture(scope="module")
def fall_model():
    pytest.importorskip("onnxruntime")
    runner = HandlerRunner(MODELS / "fall-detection")
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def face_model():
    pytest.importorskip("torch")
    runner = HandlerRunner(MODELS / "face-detection")
    yield runner
    runner.close()


def test_people_on_the_street_camera(fall_model):
    result = evaluate_set(fall_model, load(lambda: vtest_street(limit=8)))
    assert result.match.hits + result.match.misses >= 40  # eight frames spread over the video
    assert result.match.recall >= RECALL_GOAL, result.match
    assert result.match.precision >= PRECISION_GOAL, result.match
    assert result.classes.get("fall", 0) == 0  # everyone on that street is upright


def test_people_indoors_close_up_and_lying(fall_model):
    upright = evaluate_set(fall_model, load(indoor_photos))
    lying = evaluate_set(fall_model, load(lying_standin))  # the photos turned by 90 degrees: a stand-in
    for result in (upright, lying):
        assert result.match.recall >= RECALL_GOAL, (result.name, result.match)
        assert result.match.precision >= PRECISION_GOAL, (result.name, result.match)
    assert lying.match.recall >= upright.match.recall - 0.1, (lying.match, upright.match)
    assert upright.classes.get("fall", 0) == 0
    assert lying.classes.get("fall", 0) >= 0.8 * lying.match.hits, lying.classes


def test_no_fall_on_upright_walkers_over_the_video(fall_model):
    frames, people, falls, _ = load(lambda: video_falls(fall_model, step=10))
    assert frames == 80 and people > 300
    assert falls == 0


def test_faces_on_real_photos_and_lfw(face_model):
    photos = evaluate_set(face_model, load(face_photos))
    assert photos.match.hits >= 10 and photos.match.precision >= PRECISION_GOAL, photos.match  # 10 of 12 before
    pytest.importorskip("skimage")
    faces = evaluate_set(face_model, load(lfw_faces))
    assert faces.match.recall >= 0.95 and faces.match.precision >= 0.95, faces.match
    assert evaluate_set(face_model, load(lfw_nonfaces)).match.false_alarms <= 1
