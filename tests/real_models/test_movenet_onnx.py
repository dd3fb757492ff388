"""The shipped MoveNet ONNX file computes what the original TFLite file computes, on real photos.

models/fall-detection/convert_movenet.py made the ONNX file from the TFLite
one (tf2onnx) and raised the decoder's person count from 6 to 12. So: with the
count set back to 6 (two constants, in memory) the ONNX graph must give
LiteRT's output on the TFLite file to float precision; with 12, the first six
people must keep their centres, boxes and keypoint positions, and their scores
may only rise (a keypoint scores the best of all candidates' heatmaps there).
"""

from __future__ import annotations

import hashlib
import sys

import cv2
import numpy as np
import pytest

from .model_photos import MODELS, photo

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
litert = pytest.importorskip("ai_edge_litert.interpreter")

MODEL_DIR = MODELS / "fall-detection"
TFLITE = MODEL_DIR / "weights" / "movenet_multipose_lightning_fp16.tflite"
ONNX = MODEL_DIR / "weights" / "movenet_multipose_lightning_k12.onnx"
TFLITE_SHA256 = "d4489f89e6bd6777a8b9a1a16189832131f84ff90d82fae729e670b84d7948dd"  # weights/NOTICE.md
sys.path.insert(0, str(MODEL_DIR))
from convert_movenet import set_max_people  # noqa: E402

SIZES = [(256, 256), (448, 320), (128, 160), (480, 288)]
pytestmark = pytest.mark.slow  # about 10-25 s on a loaded 2-core machine


def inputs():
    """Real photos of people letterboxed-free (squeezed) to each input size, as uint8 RGB batches of one."""
    for name in ("basketball.jpg", "astronaut.jpg", "camera.jpg"):
        rgb = cv2.cvtColor(photo(name), cv2.COLOR_BGR2RGB)
        for width, height in SIZES:
            yield f"{name}@{width}x{height}", cv2.resize(rgb, (width, height), interpolation=cv2.INTER_AREA)[None]


INTERPRETERS: dict = {}


def litert_rows(image):
    interpreter = INTERPRETERS.get(image.shape)
    if interpreter is None:
        interpreter = INTERPRETERS[image.shape] = litert.Interpreter(model_path=str(TFLITE), num_threads=1)
        interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], image.shape)
        interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], image)
    interpreter.invoke()
    return interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0]


def session(model_bytes):
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    return onnxruntime.InferenceSession(model_bytes, sess_options=options, providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def sessions():
    shipped = onnx.load(str(ONNX))
    six = set_max_people(onnx.load(str(ONNX)), 6)
    return session(shipped.SerializeToString()), session(six.SerializeToString())


def test_the_tflite_original_is_the_one_the_notice_names():
    assert hashlib.sha256(TFLITE.read_bytes()).hexdigest() == TFLITE_SHA256


def test_with_six_people_the_onnx_graph_gives_litert_s_output(sessions):
    _, six = sessions
    for name, image in inputs():
        expected = litert_rows(image)
        got = six.run(None, {six.get_inputs()[0].name: image})[0][0]
        assert got.shape == (6, 56)
        assert np.abs(got - expected).max() < 1e-4, name
        assert expected[0, 55] > 0.1, name  # a person was there to compare


def test_with_twelve_people_the_first_six_keep_their_places_and_scores_only_rise(sessions):
    twelve, _ = sessions
    for name, image in inputs():
        expected = litert_rows(image)
        got = twelve.run(None, {twelve.get_inputs()[0].name: image})[0][0]
        assert got.shape == (12, 56)
        first = got[:6]
        kept = expected[:, 55] > 0.05  # people LiteRT scores at all
        points, expected_points = first[kept, :51].reshape(-1, 17, 3), expected[kept, :51].reshape(-1, 17, 3)
        assert np.abs(points[..., :2] - expected_points[..., :2]).max() < 1e-4, name  # keypoint positions
        assert np.abs(first[kept, 51:55] - expected[kept, 51:55]).max() < 1e-4, name  # boxes
        assert (points[..., 2] >= expected_points[..., 2] - 1e-4).all(), name  # keypoint scores never fall
        assert np.abs(first[kept, 55] - expected[kept, 55]).max() < 0.05, name  # person scores move little
