"""Per-model latency on this machine: preprocess + infer + postprocess on a real 1280x720 frame.

Loads each model's handler in this process exactly as the daemon does (weights
verified, device selected, load, warmup), then times the three steps on one
NV12 frame: the two test photos of people (camera.jpg, astronaut.jpg) side by
side on a 1280x720 canvas. Socket and shared-memory overhead are not included
(bench/ measures those).

    .venv/bin/python models/measure_latency.py [--iterations 50] [MODEL_DIR ...]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.frame_reader import FrameView
from ai_model_container.contract.model_config import MODEL_FILE, load_model_config, verify_weights
from ai_model_container.daemon.container import load_handler
from ai_model_container.device import select_device
from ai_model_container.handler import FrameInfo
from ruth_model_tools.frame_writer import bgr_to_nv12

MODELS = Path(__file__).resolve().parent
PHOTOS = MODELS.parent / "tests" / "real_models" / "photos"
WIDTH, HEIGHT = 1280, 720


def test_frame() -> FrameView:
    canvas = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    canvas[104:616, 40:552] = cv2.imread(str(PHOTOS / "camera.jpg"))
    canvas[104:616, 700:1212] = cv2.imread(str(PHOTOS / "astronaut.jpg"))
    return FrameView("bench", 1, 0, WIDTH, HEIGHT, bgr_to_nv12(canvas))


def measure(model_dir: Path, frame: FrameView, iterations: int) -> tuple[str, str, list[float], int]:
    config = load_model_config(model_dir / MODEL_FILE)
    verify_weights(config, model_dir)
    device = select_device(config.resources)
    handler = load_handler(config, model_dir, device)
    handler.load()
    handler.warmup()
    request = inference_request(config.model_id, frame.camera_id, 1, WIDTH, HEIGHT)
    timings, detections = [], 0
    for _ in range(iterations):
        started = time.perf_counter()
        inputs = handler.preprocess(frame, request)
        outputs = handler.postprocess(handler.infer(inputs), inputs, FrameInfo.of(frame), request)
        timings.append((time.perf_counter() - started) * 1000)
        detections = len(outputs)
    handler.close()
    return config.model_id, str(device), timings, detections


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="*", type=Path)
    parser.add_argument("--iterations", type=int, default=50)
    arguments = parser.parse_args()
    model_dirs = arguments.model_dirs or sorted(path.parent for path in MODELS.glob(f"*/{MODEL_FILE}"))
    frame = test_frame()
    print(f"{'model':<16} {'device':<8} {'p50 ms':>8} {'p90 ms':>8} {'min ms':>8} {'found':>6}")
    for model_dir in model_dirs:
        model_id, device, timings, detections = measure(model_dir, frame, arguments.iterations)
        p50 = statistics.median(timings)
        p90 = statistics.quantiles(timings, n=10)[-1]
        print(f"{model_id:<16} {device:<8} {p50:>8.1f} {p90:>8.1f} {min(timings):>8.1f} {detections:>6}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
