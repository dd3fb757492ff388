"""Regenerate weights/movenet_multipose_lightning_k12.onnx from the TFLite file beside it.

Not run by the image or the tests: it needs TensorFlow, which the model does
not ship. Made with, in a throwaway virtual environment:

    python3 -m venv /tmp/tfenv
    /tmp/tfenv/bin/pip install tensorflow-cpu==2.21.0 tf2onnx==1.17.0 onnx==1.23.2
    /tmp/tfenv/bin/python models/fall-detection/convert_movenet.py

Two steps:

1. tf2onnx converts the TFLite graph as it is (opset 17; the float16 weights
   become float32, as LiteRT dequantizes them at load).
2. The decoder at the end of MoveNet MultiPose keeps the six best person
   centres (a TopK whose k is the constant ``Minimum/x`` = 6, and a reshape to
   (1, 6, 51)). Both constants become ``MAX_PEOPLE`` so one pass returns up to
   twelve people: a street camera shows more than six.

tests/real_models/test_movenet_onnx.py checks the result against the TFLite
file on real photos: with k set back to 6 the outputs match LiteRT's to 1e-4,
and with 12 the first six people keep their centres, boxes and keypoint
positions. Only their keypoint scores can rise, a little: MoveNet scores a
keypoint by the best of all candidates' weighted heatmaps at its position, and
there are more candidates.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

HERE = Path(__file__).resolve().parent
TFLITE = HERE / "weights" / "movenet_multipose_lightning_fp16.tflite"
ONNX = HERE / "weights" / "movenet_multipose_lightning_k12.onnx"
MAX_PEOPLE = 12
TOP_K = "Minimum/x"
ROWS_SHAPE = "(1, k, 51)"
"""The shape constant of the decoder's keypoint rows (tf2onnx names it after its own counter, so found by value)."""


def set_max_people(model: onnx.ModelProto, count: int) -> onnx.ModelProto:
    """The same graph returning up to ``count`` people (the k of its TopK and the shapes that follow it)."""
    top_k = [i for i in model.graph.initializer if i.name == TOP_K and numpy_helper.to_array(i).ndim == 0]
    current = int(numpy_helper.to_array(top_k[0])) if len(top_k) == 1 else None
    rows = [i for i in model.graph.initializer if numpy_helper.to_array(i).tolist() == [1, current, 51]]
    if current is None or len(rows) != 1:
        raise ValueError(f"not the MoveNet MultiPose graph expected: {len(top_k)} {TOP_K}, {len(rows)} {ROWS_SHAPE}")
    top_k[0].CopyFrom(numpy_helper.from_array(np.array(count, np.int32), TOP_K))
    rows[0].CopyFrom(numpy_helper.from_array(np.array([1, count, 51], np.int64), rows[0].name))
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_value = count
    return model


def main() -> int:
    with tempfile.TemporaryDirectory() as scratch:
        converted = Path(scratch) / "movenet.onnx"
        subprocess.run([sys.executable, "-m", "tf2onnx.convert", "--tflite", str(TFLITE), "--output",
                        str(converted), "--opset", "17"], check=True)
        model = set_max_people(onnx.load(str(converted)), MAX_PEOPLE)
    onnx.checker.check_model(model)
    onnx.save(model, str(ONNX))
    print(f"wrote {ONNX} ({ONNX.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
