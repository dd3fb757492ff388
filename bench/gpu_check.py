"""``python -m bench.gpu_check``: the GPU path, proven in one command (under 10 minutes on one GPU).

1. The batching section (``bench.batching``) on the GPU (``RUTH_DEVICE=cuda``).
2. A torch model that does its NV12 to RGB conversion and letterbox on the GPU for
   the whole batch (``backends.NV12Staging``: pinned host buffers, reused) and runs
   a small convolutional network, served by the real daemon with batching on:
   its answers are checked against the same network on the CPU, then 100,000
   requests from 32 cameras in step go through it while the daemon's GPU memory
   (its stats op) and RSS are sampled; both must stay flat once the largest
   batch has been seen.

Prints one table and exits 1 when a check fails, 2 when there is no CUDA device.
``--device cpu --requests N --no-batching`` runs part 2 on the CPU (the test suite does,
so the script and the staging path run everywhere; GPU memory is then not measured).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from pathlib import Path

import yaml

from ai_model_container.backends import NV12Staging
from ai_model_container.contract.client import ModelClient, inference_request
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.schema import FrameMetadata
from ai_model_container.device import Device
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

from . import batching
from .options import Options
from .procs import launch_model, rss_bytes
from .table import Row, Target, render

REQUESTS = 100_000
CAMERAS = 32
FLAT_GPU_BYTES = 1 << 20
"""GPU memory may move by at most this much after warm-up (allocator rounding), not grow with requests."""
FLAT_RSS_BYTES = 32 << 20

TORCH_HANDLER = textwrap.dedent('''
    """A small convolutional network on NV12 frames converted and letterboxed on the GPU, a batch at a time."""
    import torch

    from ai_model_container import Detection, InferenceHandler
    from ai_model_container.backends import NV12Staging, torch_device

    SIZE = 224


    def network() -> torch.nn.Module:
        torch.manual_seed(7)
        return torch.nn.Sequential(
            torch.nn.Conv2d(3, 16, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(16, 32, 3, stride=2),
            torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(32, 4),
            torch.nn.Sigmoid())


    class Handler(InferenceHandler):
        def load(self):
            self.staging = NV12Staging(self.device)
            self.net = network().to(torch_device(self.device)).eval()

        def preprocess(self, frame, request):
            return self.staging.stage(frame)

        @torch.inference_mode()
        def infer_batch(self, inputs):
            batch, _ = self.staging.to_batch(inputs, SIZE, SIZE)
            return list(self.net(batch / 255.0).cpu())

        def postprocess(self, outputs, inputs, frame, request):
            (x0, x1), (y0, y1) = sorted(outputs[:2].tolist()), sorted(outputs[2:].tolist())
            return [Detection(class_id=0, class_name="thing", confidence=float(outputs.mean()),
                              bbox=(x0 * frame.width, y0 * frame.height, x1 * frame.width, y1 * frame.height),
                              attributes={"outputs": [round(float(v), 5) for v in outputs]})]
''')


def torch_model(directory: Path) -> Path:
    directory.mkdir(parents=True)
    (directory / "gpu_net.py").write_text(TORCH_HANDLER)
    (directory / "model.yaml").write_text(yaml.safe_dump({
        "model_id": "gpu_net", "model_name": "GPU check network", "model_version": "1.0.0",
        "supported_tasks": ["detection"], "output_schema": {"classes": ["thing"]},
        "entry_point": "gpu_net:Handler", "resources": {"device": "cuda", "cpu_fallback": False},
        "limits": {"max_concurrent_requests": 2, "queue_wait_ms": 2000, "timeout_ms": 10000},
        "batching": {"max_batch_size": 32, "max_queue_delay_us": 2000},
    }))
    return directory


def answers_match_the_cpu(socket: Path, model_id: str, writer: FrameWriter, model_dir: Path) -> Row:
    """The daemon's outputs for a real frame, against the same network and conversion run here on the CPU."""
    import torch

    sys.path.insert(0, str(model_dir))
    from gpu_net import SIZE, network  # the generated model's own module

    with ModelClient(socket) as client:
        response = client.infer(inference_request(model_id, writer.camera_id, writer.last_frame_id, writer.width,
                                                  writer.height))
    served = torch.tensor(response.detections[0].attributes["outputs"])
    staging = NV12Staging(Device("cpu", "cpu"))
    metadata = FrameMetadata(frame_id=writer.last_frame_id, width=writer.width, height=writer.height)
    batch, _ = staging.to_batch([FrameReader().read_camera(writer.camera_id, metadata, staging.stage)], SIZE, SIZE)
    with torch.inference_mode():
        here = network().eval()(batch / 255.0)[0]
    return Row("gpu", "served vs CPU outputs, largest difference", "", float((served - here).abs().max()), 1e-3,
               "tolerance", Target("lower"))


def memory_stays_flat(socket: Path, model_id: str, writers: list[FrameWriter], daemon_pid: int,
                      requests: int, judge_rss: bool) -> list[Row]:
    """``judge_rss``: hold the daemon's RSS to FLAT_RSS_BYTES (on a GPU run; torch on the CPU warms its
    allocator arenas up over tens of thousands of requests, so a short CPU run reports growth only)."""
    per_client = requests // len(writers)
    start = threading.Barrier(len(writers))
    samples: list[tuple[int, int, int]] = []
    errors: list[str] = []

    def client(index: int) -> None:
        writer = writers[index]
        request = inference_request(model_id, writer.camera_id, writer.last_frame_id, writer.width, writer.height)
        with ModelClient(socket, request_timeout_s=30.0) as connection:
            for sent in range(per_client):
                start.wait()
                response = connection.infer(request)
                if response.error_code is not None:
                    errors.append(f"{response.error_code.value}: {response.error}")
                if index == 0 and sent % max(1, per_client // 200) == 0:
                    stats = connection.stats()
                    samples.append((sent * len(writers), stats.gpu_memory_bytes or 0, rss_bytes(daemon_pid)))

    threads = [threading.Thread(target=client, args=(index,), daemon=True) for index in range(len(writers))]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - began
    settled = samples[len(samples) // 10:]  # after warm-up: every batch size has been seen
    gpu = [sample[1] for sample in settled]
    rss = [sample[2] for sample in settled]
    sent = per_client * len(writers)
    rows = [
        Row("gpu", f"requests answered ({len(writers)} cameras in step)", "req", sent - len(errors), sent, "sent",
            Target("higher")),
        Row("gpu", "throughput", "req/s", sent / elapsed),
        Row("gpu", "daemon RSS growth after warm-up", "bytes", max(rss) - min(rss), FLAT_RSS_BYTES if judge_rss else None,
            "flat" if judge_rss else "", Target("lower") if judge_rss else None),
    ]
    if errors:
        print(f"gpu_check: {len(errors)} failed requests, first: {errors[0]}", file=sys.stderr)
    print("gpu_check: RSS MiB over the run: " + " ".join(f"{sample[2] / 2 ** 20:.0f}" for sample in samples[::10]),
          file=sys.stderr)
    if any(gpu):
        rows += [Row("gpu", "GPU memory growth after warm-up", "bytes", max(gpu) - min(gpu), FLAT_GPU_BYTES, "flat",
                     Target("lower")),
                 Row("gpu", "GPU memory in use", "MiB", max(gpu) / 2 ** 20)]
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_check", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter batching runs")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--no-batching", dest="batching", action="store_false", help="skip the batching section")
    parser.add_argument("--frame-size", default="1920x1080", help="WIDTHxHEIGHT of the cameras' frames")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a GPU machine (or --device cpu)", file=sys.stderr)
        return 2
    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    if args.batching:
        section = batching.run(Options(quick=args.quick, device=args.device))
        rows, notes = list(section.rows), section.notes
    width, height = (int(side) for side in args.frame_size.split("x"))
    workdir = Path(tempfile.mkdtemp(prefix="bgpu-", dir="/tmp"))
    writers: list[FrameWriter] = []
    try:
        writers += [FrameWriter(f"bg{uuid.uuid4().hex[:6]}_{index}", width, height, 4) for index in range(CAMERAS)]
        for index, writer in enumerate(writers):
            writer.write_bgr(synthetic_scene(index, writer.width, writer.height)[0])
        model_dir = torch_model(workdir / "gpu_net")
        model_id = f"gpu_net_{uuid.uuid4().hex[:6]}"
        with launch_model(model_dir, workdir, model_id, args.device) as server:
            rows.append(answers_match_the_cpu(server.socket, model_id, writers[0], model_dir))
            rows.extend(memory_stays_flat(server.socket, model_id, writers, server.pid, args.requests,
                                          judge_rss=args.device == "cuda"))
    finally:
        for writer in writers:
            writer.close()
        shutil.rmtree(workdir, ignore_errors=True)
    print(render(rows))
    print()
    print("\n".join(notes))
    device = torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu"
    print(f"total {time.monotonic() - started:.0f} s, {device}")
    return 1 if any(row.verdict == "MISS" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
