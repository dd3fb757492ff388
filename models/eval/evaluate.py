"""Precision, recall and latency of a model on the labelled sets, through its handler as the daemon runs it.

Each model directory is loaded exactly as the daemon loads it (model.yaml,
weights verified against their sha256, device selected, handler loaded and
warmed up); every image is converted to an NV12 frame and goes through
preprocess, infer and postprocess. A detection hits a labelled box at IoU >=
0.5 (each box at most once, best score first). Latency is those three steps
per image, with the process pinned to one CPU core (``--cores``) and OpenCV,
onnxruntime and torch told to use one thread: ``p50 ms`` / ``p90 ms`` are wall
clock, ``cpu ms`` the median CPU time of the same steps, which other work on a
shared machine inflates far less.

    .venv/bin/python models/eval/evaluate.py models/fall-detection
    .venv/bin/python models/eval/evaluate.py models/face-detection --config '{"min_face_size": 40}'
    .venv/bin/python models/eval/evaluate.py OLD_COPY/fall-detection models/fall-detection   # before / after
    .venv/bin/python models/eval/evaluate.py models/fall-detection --video-falls   # 'fall' over all of vtest.avi

Sets: see datasets.py. A set whose files are missing prints why and is skipped.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

import argparse  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Optional, Sequence  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from datasets import FACE_SETS, PEOPLE_SETS, ImageSet, SetUnavailable, vtest_frames  # noqa: E402
from metrics import Match, match  # noqa: E402

from ai_model_container.contract.client import inference_request  # noqa: E402
from ai_model_container.contract.frame_reader import FrameView  # noqa: E402
from ai_model_container.contract.model_config import MODEL_FILE, load_model_config, verify_weights  # noqa: E402
from ai_model_container.contract.schema import Detection  # noqa: E402
from ai_model_container.daemon.container import load_handler  # noqa: E402
from ai_model_container.device import select_device  # noqa: E402
from ai_model_container.handler import FrameInfo  # noqa: E402
from ruth_model_tools.frame_writer import bgr_to_nv12  # noqa: E402


def pin_to_cores(count: int) -> str:
    """Pin this process to ``count`` of the cores it may use; returns a description."""
    cv2.setNumThreads(max(1, count))
    if count <= 0 or not hasattr(os, "sched_setaffinity"):
        return "all cores"
    allowed = sorted(os.sched_getaffinity(0))
    os.sched_setaffinity(0, set(allowed[:count]))
    return f"{count} core(s) {allowed[:count]}"


def _written_for_runtime_0_1(handler: Any) -> bool:
    """True for a handler from before runtime 0.2, whose postprocess took (outputs, frame, request).

    Only so that ``evaluate.py OLD_COPY/model models/model`` can compare a model before and after
    in one run; the daemon serves the current handler API only.
    """
    return len(inspect.signature(handler.postprocess).parameters) == 3


class HandlerRunner:
    """A model's handler, loaded as the daemon loads it, fed NV12 frames."""

    def __init__(self, model_dir: Path, config: Optional[dict[str, Any]] = None) -> None:
        self.model_dir = Path(model_dir)
        self.config = load_model_config(self.model_dir / MODEL_FILE)
        verify_weights(self.config, self.model_dir)
        self.device = select_device(self.config.resources)
        self.handler = load_handler(self.config, self.model_dir, self.device)
        self.handler.load()
        self.options = config or {}
        self.frame_id = 0
        self._before_inputs = _written_for_runtime_0_1(self.handler)
        if self._before_inputs:
            self(np.zeros((480, 640, 3), np.uint8))  # the base class's warmup speaks the current handler API
        else:
            self.handler.warmup()
        self._forget_modules()

    def _forget_modules(self) -> None:
        """Unimport this model's own modules, so a second copy of the same model (before / after) loads its own.

        The loaded handler keeps working: its functions hold their modules' globals.
        """
        directory = str(self.model_dir.resolve())
        for name, module in list(sys.modules.items()):
            if (getattr(module, "__file__", None) or "").startswith(directory + os.sep):
                del sys.modules[name]
        if directory in sys.path:
            sys.path.remove(directory)

    def __call__(self, bgr: np.ndarray) -> tuple[list[Detection], float]:
        height, width = bgr.shape[:2]
        self.frame_id += 1
        frame = FrameView("eval", self.frame_id, 0, width, height, bgr_to_nv12(bgr))
        request = inference_request(self.config.model_id, "eval", self.frame_id, width, height, self.options)
        started, cpu_started = time.perf_counter(), time.process_time()
        inputs = self.handler.preprocess(frame, request)
        outputs = self.handler.infer(inputs)
        if self._before_inputs:
            detections = self.handler.postprocess(outputs, FrameInfo.of(frame), request)
        else:
            detections = self.handler.postprocess(outputs, inputs, FrameInfo.of(frame), request)
        self.last_cpu_ms = (time.process_time() - cpu_started) * 1000
        return list(detections), (time.perf_counter() - started) * 1000

    def close(self) -> None:
        self.handler.close()


@dataclass
class SetResult:
    name: str
    images: int
    match: Match
    milliseconds: list[float]
    cpu_milliseconds: list[float] = field(default_factory=list)
    """CPU time of the same steps: what the model costs, whatever else the machine was running."""
    classes: dict[str, int] = field(default_factory=dict)
    """Class names of the detections that hit a labelled box."""

    @property
    def cpu_p50(self) -> float:
        return statistics.median(self.cpu_milliseconds) if self.cpu_milliseconds else float("nan")

    @property
    def p50(self) -> float:
        return statistics.median(self.milliseconds) if self.milliseconds else float("nan")

    @property
    def p90(self) -> float:
        if len(self.milliseconds) < 2:
            return self.p50
        return statistics.quantiles(self.milliseconds, n=10)[-1]


def evaluate_set(runner: HandlerRunner, image_set: ImageSet, repeats: int = 1) -> SetResult:
    total, timings, cpu, classes = Match(), [], [], {}
    for sample in image_set.samples:
        for _ in range(repeats):
            detections, milliseconds = runner(sample.image)
            timings.append(milliseconds)
            cpu.append(runner.last_cpu_ms)
        pairs = [(tuple(d.bbox), d.confidence) for d in detections]
        result, hit_of = match(pairs, sample.boxes, sample.ignore, 0.5, image_set.min_height)
        total += result
        for detection, hit in zip(detections, hit_of):
            if hit >= 0:
                classes[detection.class_name] = classes.get(detection.class_name, 0) + 1
    return SetResult(image_set.name, len(image_set.samples), total, timings, cpu, classes)


def video_falls(runner: HandlerRunner, step: int = 1) -> tuple[int, int, int, list[float]]:
    """(frames, people, falls, CPU ms per frame) over vtest.avi, every ``step``-th frame: everyone there is
    upright."""
    frames = people = falls = 0
    timings = []
    for index, frame in vtest_frames():
        if index % step:
            continue
        detections, milliseconds = runner(np.ascontiguousarray(frame))
        timings.append(runner.last_cpu_ms)
        frames += 1
        people += len(detections)
        falls += sum(d.class_name == "fall" for d in detections)
    return frames, people, falls, timings


def sets_for(model_id: str) -> dict:
    return FACE_SETS if "face" in model_id else PEOPLE_SETS


def format_row(model: str, result: SetResult) -> str:
    m = result.match
    classes = " ".join(f"{name}={count}" for name, count in sorted(result.classes.items()))
    return (f"{model:<22} {result.name:<14} {result.images:>4} {m.hits + m.misses:>4} {m.hits:>4} {m.false_alarms:>4}"
            f" {m.precision:>6.3f} {m.recall:>6.3f} {result.p50:>7.1f} {result.p90:>7.1f} {result.cpu_p50:>7.1f}"
            f"  {classes}")


HEADER = (f"{'model':<22} {'set':<14} {'imgs':>4} {'gt':>4} {'hit':>4} {'fa':>4} {'prec':>6} {'recall':>6}"
          f" {'p50 ms':>7} {'p90 ms':>7} {'cpu ms':>7}  classes of hits")


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dirs", nargs="+", type=Path)
    parser.add_argument("--sets", help="comma-separated set names (default: all of the model's)")
    parser.add_argument("--config", type=json.loads, default=None, help="per-request options, as JSON")
    parser.add_argument("--cores", type=int, default=1, help="CPU cores to pin to (0: no pinning)")
    parser.add_argument("--repeats", type=int, default=1, help="timed runs per image")
    parser.add_argument("--video-falls", action="store_true", help="count 'fall' over every frame of vtest.avi")
    arguments = parser.parse_args(argv)
    pinned = pin_to_cores(arguments.cores)
    print(f"# {time.strftime('%Y-%m-%d %H:%M %Z')} on {platform.node()} ({platform.processor() or platform.machine()},"
          f" {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}), pinned to {pinned};"
          f" options {json.dumps(arguments.config or {})}")
    runners = [(path, HandlerRunner(path, arguments.config)) for path in arguments.model_dirs]
    labels = [f"{runner.config.model_id} {runner.config.model_version}" for _, runner in runners]
    if arguments.video_falls:
        print(f"{'model':<22} {'frames':>6} {'people':>7} {'falls':>6} {'cpu p50':>7} {'cpu p90':>7}")
        for label, (_, runner) in zip(labels, runners):
            frames, people, falls, timings = video_falls(runner)
            print(f"{label:<22} {frames:>6} {people:>7} {falls:>6} {statistics.median(timings):>7.1f}"
                  f" {statistics.quantiles(timings, n=10)[-1]:>7.1f}")
        return 0
    available = sets_for(runners[0][1].config.model_id)
    names = arguments.sets.split(",") if arguments.sets else list(available)
    print(HEADER)
    for name in names:
        try:
            image_set = available[name]()
        except SetUnavailable as reason:
            print(f"{'':<22} {name:<14} skipped: {reason}")
            continue
        for label, (_, runner) in zip(labels, runners):  # models take turns per set, so load drifts hit both
            print(format_row(label, evaluate_set(runner, image_set, arguments.repeats)), flush=True)
    for _, runner in runners:
        runner.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
