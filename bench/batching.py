"""Batching section: cameras in step into one model, with the daemon's dynamic batcher on and off.

1, 8 and 32 clients, each a camera with its own ring, send one request per
round all at the same instant (the way VAS ticks cameras of one rate) and
wait for their answers; frames/s and per-request latency (p50, p99) are
measured with ``batching`` in model.yaml and without it, in the same run.

Two models, each on one worker:
- ``fixed-cost``: a model call costs 20 ms whether it carries 1 frame or 32,
  which is how a GPU behaves for a small network; batching must reach at
  least 8x its batch-1 frames/s at 32 cameras;
- ``template``: the model template's real ONNX network on this CPU, where a
  batch costs nearly as much per frame as single frames (the gain is modest).

``--device cuda`` (``python -m bench --only batching --device cuda``) runs the
same on the GPU (RUTH_DEVICE=cuda for the daemons); the template then needs
onnxruntime with its CUDA provider.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from ai_model_container.contract.client import ModelClient, inference_request
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

from .options import Options
from .procs import REPO_ROOT, launch_model
from .table import Row, SectionResult, Target

SECTION = "batching"
CLIENTS = (1, 8, 32)
MAX_BATCH_SIZE = 32
MAX_QUEUE_DELAY_US = 5000
FIXED_COST_S = 0.02
GOAL_SPEEDUP = 8.0
PERIOD_MS = 100.0
"""One frame period at 10 fps: the p99 latency goal at 32 cameras."""

FIXED_COST_HANDLER = textwrap.dedent(f'''
    """A model call that costs {FIXED_COST_S * 1000:g} ms for any batch size, like a small network on a GPU."""
    import time

    from ai_model_container import Detection, InferenceHandler


    class Handler(InferenceHandler):
        def preprocess(self, frame, request):
            return float(frame.y[0, 0])

        def infer_batch(self, inputs):
            time.sleep({FIXED_COST_S})
            return inputs

        def postprocess(self, outputs, inputs, frame, request):
            return [Detection(class_id=0, class_name="thing", confidence=1.0, bbox=(0.0, 0.0, 1.0, 1.0))]
''')


@dataclass(frozen=True)
class Measured:
    frames_per_s: float
    p50_ms: float
    p99_ms: float


def fixed_cost_model(directory: Path, batching: bool) -> Path:
    directory.mkdir(parents=True)
    (directory / "fixed_cost.py").write_text(FIXED_COST_HANDLER)
    config = {
        "model_id": "fixed_cost", "model_name": "Fixed-cost batch model", "model_version": "1.0.0",
        "supported_tasks": ["detection"], "output_schema": {"classes": ["thing"]},
        "entry_point": "fixed_cost:Handler", "resources": {"device": "auto"},
        "limits": {"max_concurrent_requests": 1, "queue_wait_ms": 2000, "timeout_ms": 10000},
    }
    if batching:
        config["batching"] = {"max_batch_size": MAX_BATCH_SIZE, "max_queue_delay_us": MAX_QUEUE_DELAY_US}
    (directory / "model.yaml").write_text(yaml.safe_dump(config))
    return directory


def template_model(directory: Path, batching: bool) -> Path:
    shutil.copytree(REPO_ROOT / "models" / "_template", directory,
                    ignore=shutil.ignore_patterns("__pycache__", "tests", ".wheelhouse"))
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["limits"].update({"max_concurrent_requests": 1, "queue_wait_ms": 5000, "timeout_ms": 20000})
    config.pop("batching", None)
    if batching:
        config["batching"] = {"max_batch_size": MAX_BATCH_SIZE, "max_queue_delay_us": MAX_QUEUE_DELAY_US}
    (directory / "model.yaml").write_text(yaml.safe_dump(config))
    return directory


MODELS = {"fixed-cost": (fixed_cost_model, 64, 48), "template": (template_model, 640, 480)}


def in_step(socket: Path, model_id: str, writers: list[FrameWriter], seconds: float) -> Measured:
    """Every client sends one request per round at the same instant; rounds until ``seconds`` pass."""
    clients = len(writers)
    start = threading.Barrier(clients)
    stop_at = [0.0]
    latencies: list[list[float]] = [[] for _ in writers]
    errors: list[str] = []

    def client(index: int) -> None:
        writer = writers[index]
        frame_id = writer.last_frame_id
        request = inference_request(model_id, writer.camera_id, frame_id, writer.width, writer.height)
        try:
            with ModelClient(socket, request_timeout_s=30.0) as connection:
                connection.infer(request)  # connect and warm the path
                while True:
                    start.wait()
                    if time.monotonic() >= stop_at[0]:
                        return
                    sent = time.perf_counter()
                    response = connection.infer(request)
                    latencies[index].append((time.perf_counter() - sent) * 1000.0)
                    if response.error_code is not None:
                        errors.append(f"{response.error_code.value}: {response.error}")
        except Exception as exc:  # noqa: BLE001  a failed client must not hang the others at the barrier
            errors.append(f"{type(exc).__name__}: {exc}")
            start.abort()

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(clients)]
    stop_at[0] = time.monotonic() + 3600
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    began = time.monotonic()
    stop_at[0] = began + seconds
    for thread in threads:
        thread.join(seconds + 60)
    elapsed = time.monotonic() - began
    if errors:
        raise RuntimeError(f"{len(errors)} failed requests, first: {errors[0]}")
    every = sorted(value for values in latencies for value in values)
    return Measured(len(every) / elapsed, statistics.median(every), every[min(len(every) - 1, int(len(every) * 0.99))])


def run(options: Options) -> SectionResult:
    device = options.device
    seconds = options.scaled(6.0, 3.0)
    workdir = Path(tempfile.mkdtemp(prefix="bbat-", dir="/tmp"))
    rows: list[Row] = []
    notes = [f"batching: clients in step, max_batch_size {MAX_BATCH_SIZE}, max_queue_delay_us {MAX_QUEUE_DELAY_US}, "
             f"one worker{', device ' + device if device else ''}:",
             "| model | cameras in step | batching | frames/s | p50 ms | p99 ms |", "|---|---|---|---|---|---|"]
    try:
        for name, (make, width, height) in MODELS.items():
            results: dict[tuple[int, bool], Measured] = {}
            writers = [FrameWriter(f"bb{uuid.uuid4().hex[:6]}_{index}", width, height, 4) for index in range(max(CLIENTS))]
            try:
                image = synthetic_scene(1, width, height)[0]
                for writer in writers:
                    writer.write_bgr(image)
                for batching in (False, True):
                    model_dir = make(workdir / f"{name}-{'on' if batching else 'off'}", batching)
                    model_id = f"{name.replace('-', '_')}_{uuid.uuid4().hex[:6]}"
                    with launch_model(model_dir, workdir, model_id, device) as server:
                        for clients in CLIENTS:
                            results[(clients, batching)] = in_step(server.socket, model_id, writers[:clients], seconds)
            finally:
                for writer in writers:
                    writer.close()
            for (clients, batching), measured in sorted(results.items()):
                notes.append(f"| {name} | {clients} | {'on' if batching else 'off'} | {measured.frames_per_s:,.0f} "
                             f"| {measured.p50_ms:.1f} | {measured.p99_ms:.1f} |")
            on, off = results[(max(CLIENTS), True)], results[(max(CLIENTS), False)]
            target = Target("higher", 1.0 / GOAL_SPEEDUP) if name == "fixed-cost" else None
            rows.append(Row(SECTION, f"{name}: frames/s at {max(CLIENTS)} cameras, batching on vs off", "frames/s",
                            on.frames_per_s, off.frames_per_s, "batching off", target))
            rows.append(Row(SECTION, f"{name}: p99 latency at {max(CLIENTS)} cameras, batching on", "ms", on.p99_ms,
                            PERIOD_MS, "one period at 10 fps", Target("lower") if name == "fixed-cost" else None))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return SectionResult(rows, notes)
