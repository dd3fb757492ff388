"""Write weights/bright_spots.onnx, the template's tiny real model, and print its sha256 for model.yaml.

The network scores every 4x4 cell of a 320x320 RGB input by how bright it
is: a 1x1 convolution computes luma (BT.601 weights), average pooling reduces
it to cells, and a steep sigmoid centred on 60 % brightness turns that into a
0..1 score. The batch dimension is dynamic, so the runtime's batcher can run
several frames in one call. Its weights are set, not trained, which keeps it small and its
answers predictable; it exists so the template exercises the whole path a
real model takes (weights file, sha256 check, ONNX Runtime, letterbox, boxes).
Replace it with your model's weights.

Needs the onnx package (models/_template/requirements-dev.txt). The output
is byte-for-byte reproducible: ``python make_weights.py --check`` verifies
the committed file.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUTPUT = Path(__file__).resolve().parent / "weights" / "bright_spots.onnx"
INPUT_SIZE = 320
CELL = 4
BRIGHTNESS_CENTRE = 0.6
STEEPNESS = 20.0


def build() -> onnx.ModelProto:
    luma = np.array([0.299, 0.587, 0.114], dtype=np.float32).reshape(1, 3, 1, 1) / 255.0
    nodes = [
        helper.make_node("Conv", ["image", "luma_weight", "luma_bias"], ["luma"]),
        helper.make_node("AveragePool", ["luma"], ["cell_luma"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        helper.make_node("Mul", ["cell_luma", "steepness"], ["logit"]),
        helper.make_node("Sigmoid", ["logit"], ["score"]),
    ]
    initializers = [
        numpy_helper.from_array(luma, "luma_weight"),
        numpy_helper.from_array(np.array([-BRIGHTNESS_CENTRE], dtype=np.float32), "luma_bias"),
        numpy_helper.from_array(np.array(STEEPNESS, dtype=np.float32), "steepness"),
    ]
    cells = INPUT_SIZE // CELL
    graph = helper.make_graph(
        nodes, "bright_spots",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 3, INPUT_SIZE, INPUT_SIZE])],
        [helper.make_tensor_value_info("score", TensorProto.FLOAT, ["batch", 1, cells, cells])],
        initializer=initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="ruth-ai template")
    model.ir_version = 8  # readable by every onnxruntime since 1.10
    onnx.checker.check_model(model)
    return model


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="verify the committed file instead of writing it")
    arguments = parser.parse_args()
    data = build().SerializeToString(deterministic=True)
    digest = hashlib.sha256(data).hexdigest()
    if arguments.check:
        if not OUTPUT.is_file() or OUTPUT.read_bytes() != data:
            print(f"{OUTPUT} differs from what make_weights.py builds (sha256 {digest})", file=sys.stderr)
            return 1
        print(f"{OUTPUT} is up to date")
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_bytes(data)
    print(f"wrote {OUTPUT}\nsha256: {digest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
