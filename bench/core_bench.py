"""Core section: what Ruth AI Core adds on top of the runtime, how far one core scales, where its time goes.

All against the benchmark's no-op model daemon (bench/noop_model), so the
numbers are the core's and the IPC's, not a model's.

1. Overhead per request: a frame handed to ``Core.dispatch`` until its event is
   written (thread hand-off, request build, pooled connection, daemon round
   trip, response validation, event JSON, metrics), against a direct
   ``ModelClient`` building and sending the same request, interleaved in the
   same run. p50 of each; the difference is the core's overhead.
2. Capacity: ``ruth-ai run`` as its own process, N cameras x 10 fps from the
   reference writer (its own process), every camera assigned to the no-op
   model. A level is sustained when answered requests reach 95% of N x 10 per
   second. Reports the largest sustained level and the core's CPU per request.
3. Profile: the core in-process under 16 cameras x 10 fps, every thread under
   cProfile, top functions by own time.
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Optional

import yaml

from ai_model_container.contract.client import ModelClient, inference_request
from ruth_ai_core.agent import SelectedFrame
from ruth_ai_core.assignments import Assignment
from ruth_ai_core.core import Core
from ruth_ai_core.events import JsonLinesSink, ResultEvent
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.router import RouteSettings
from ruth_ai_core.status import fetch, parse
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

from .options import Options
from .procs import REPO_ROOT, cpu_seconds, start_runtime
from .table import Row, SectionResult

SECTION = "core"
CAMERA_FPS = 10.0
WIDTH, HEIGHT = 320, 240
SUSTAINED = 0.95
IDLE_WAITS = ("acquire' of '_thread.lock", "SimpleQueue", "threading.py")


class _SignallingSink(JsonLinesSink):
    """Writes events (to /dev/null) like the real sink, and wakes the benchmark on each."""

    def __init__(self) -> None:
        super().__init__(os.devnull)
        self.written_event = threading.Event()

    def write(self, event: ResultEvent) -> None:
        super().write(event)
        self.written_event.set()


def _overhead(socket_dir: Path, model_id: str, options: Options) -> tuple[list[Row], list[str]]:
    camera = f"bench_core_{uuid.uuid4().hex[:6]}"
    writer = FrameWriter(camera, WIDTH, HEIGHT, 4)
    sink = _SignallingSink()
    core = Core(sink, settings=RouteSettings(pool_size=1), socket_dir=str(socket_dir))
    try:
        frame_id = writer.write_bgr(synthetic_scene(0, WIDTH, HEIGHT)[0])
        core.apply([Assignment(camera=camera, model=model_id, fps=0.01)])
        subscription = core.subscriptions()[0]
        frame = SelectedFrame(camera, frame_id, time.time_ns(), WIDTH, HEIGHT)
        count = int(options.scaled(2000, 500))
        direct_p50, core_p50 = [], []
        with ModelClient(core.router.endpoint(model_id)) as client:
            for repeat in range(options.repeats):
                for which in (("direct", "core") if repeat % 2 == 0 else ("core", "direct")):
                    samples = []
                    for _ in range(count):
                        started = time.perf_counter()
                        if which == "direct":
                            client.infer(inference_request(model_id, camera, frame_id, WIDTH, HEIGHT))
                        else:
                            sink.written_event.clear()
                            core.dispatch(subscription, frame)
                            sink.written_event.wait(5)
                        samples.append(time.perf_counter() - started)
                    samples.sort()
                    (direct_p50 if which == "direct" else core_p50).append(samples[len(samples) // 2] * 1e6)
        counts = core.stop()
        assert counts.balanced and counts.errors == 0, counts
    finally:
        core.stop()
        sink.close()
        writer.close()
    direct, through_core = median(direct_p50), median(core_p50)
    rows = [
        Row(SECTION, "round trip through the core, p50", "us", through_core, direct, "direct ModelClient"),
        Row(SECTION, "core overhead per request, p50", "us", through_core - direct),
    ]
    return rows, []


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _capacity_level(socket_dir: Path, model_id: str, cameras: int, seconds: float) -> tuple[float, float, float]:
    """(answered per second, target per second, core CPU us per answered request) at ``cameras`` x 10 fps."""
    tag = uuid.uuid4().hex[:6]
    names = [f"bc{tag}_{index}" for index in range(cameras)]
    registry_path = socket_dir / f"registry-{tag}.sqlite3"
    with ModelRegistry(registry_path) as registry:
        registry.import_from_daemon(socket_dir / f"vas_model_{model_id}.sock")
    assignments = socket_dir / f"assignments-{tag}.yaml"
    assignments.write_text(yaml.safe_dump({"assignments": [
        {"camera": name, "model": model_id, "fps": CAMERA_FPS} for name in names]}))
    port = _free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writer = subprocess.Popen([sys.executable, "-m", "ai_model_container.daemon.cli", "write-frames", "--source", "synthetic",
                               "--fps", str(CAMERA_FPS), "--width", str(WIDTH), "--height", str(HEIGHT),
                               *sum((["--camera", n] for n in names), [])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    core = subprocess.Popen([sys.executable, "-m", "ruth_ai_core.cli", "run", "--assignments", str(assignments),
                             "--registry", str(registry_path), "--events", os.devnull, "--socket-dir", str(socket_dir),
                             "--metrics-port", str(port), "--pool-size", "8"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                first = parse(fetch(url))
                if sum(r.results for r in first.pairs.values()) >= cameras:
                    break
            except Exception:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the core did not start answering")
            time.sleep(0.2)
        time.sleep(1.0)  # let every camera get going
        first, cpu_before, started = parse(fetch(url)), cpu_seconds(core.pid), time.monotonic()
        time.sleep(seconds)
        last, cpu_after, ended = parse(fetch(url)), cpu_seconds(core.pid), time.monotonic()
    finally:
        for process in (core, writer):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    answered = sum(r.results + r.errors for r in last.pairs.values()) - sum(r.results + r.errors for r in first.pairs.values())
    rate = answered / (ended - started)
    cpu_us = (cpu_after - cpu_before) / answered * 1e6 if answered else float("nan")
    return rate, cameras * CAMERA_FPS, cpu_us


def _capacity(socket_dir: Path, model_id: str, options: Options) -> tuple[list[Row], list[str]]:
    levels = [4, 8, 16, 32, 48, 64, 96] if not options.quick else [8, 32, 64]
    seconds = options.scaled(6.0, 3.0)
    notes, best = [], None
    for cameras in levels:
        rate, target, cpu_us = _capacity_level(socket_dir, model_id, cameras, seconds)
        ok = rate >= SUSTAINED * target
        notes.append(f"core capacity: {cameras} cameras x {CAMERA_FPS:g} fps: {rate:.0f}/{target:.0f} answered/s, "
                     f"core CPU {cpu_us:.0f} us per request -> {'sustained' if ok else 'NOT sustained'}")
        if not ok:
            break
        best = (cameras, rate, cpu_us)
    rows = []
    if best is not None:
        rows.append(Row(SECTION, f"cameras x {CAMERA_FPS:g} fps sustained (no-op model)", "cameras", best[0]))
        rows.append(Row(SECTION, "core CPU per request at that load", "us", best[2]))
    return rows, notes


def _profile(socket_dir: Path, model_id: str, options: Options) -> list[str]:
    """Top functions by own time across every core thread (agents, workers, monitors)."""
    profilers: list[cProfile.Profile] = []

    def start_thread_profiler(*_: object) -> None:
        profiler = cProfile.Profile()
        profilers.append(profiler)
        profiler.enable()

    tag = uuid.uuid4().hex[:6]
    names = [f"bp{tag}_{index}" for index in range(16)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    writer = subprocess.Popen([sys.executable, "-m", "ai_model_container.daemon.cli", "write-frames", "--source", "synthetic",
                               "--fps", str(CAMERA_FPS), "--width", str(WIDTH), "--height", str(HEIGHT),
                               *sum((["--camera", n] for n in names), [])],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    core: Optional[Core] = None
    try:
        time.sleep(1.0)
        threading.setprofile(start_thread_profiler)
        core = Core(JsonLinesSink(os.devnull), settings=RouteSettings(pool_size=8), socket_dir=str(socket_dir))
        core.apply([Assignment(camera=n, model=model_id, fps=CAMERA_FPS) for n in names])
        time.sleep(options.scaled(6.0, 3.0))
        totals = core.stop()
    finally:
        threading.setprofile(None)
        if core is not None:
            core.stop()
            core.sink.close()
        writer.send_signal(signal.SIGTERM)
        writer.wait(20)
    stats = pstats.Stats(*profilers, stream=(out := io.StringIO()))
    stats.sort_stats("tottime").print_stats(40)
    lines = [line for line in out.getvalue().splitlines() if line.strip()]
    start = next(i for i, line in enumerate(lines) if "ncalls" in line)
    busy = [line for line in lines[start + 1:] if not any(idle in line for idle in IDLE_WAITS)]
    return [f"core profile, 16 cameras x {CAMERA_FPS:g} fps, {totals.results} requests, all threads, "
            f"top by own time (threads idling in lock/queue waits left out; a C call's time includes "
            f"waiting for the GIL):", "    " + lines[start]] + ["    " + line for line in busy[:12]]


def run(options: Options) -> SectionResult:
    socket_dir = Path(tempfile.mkdtemp(prefix="bcore-", dir="/tmp"))
    model_id = f"bench_noop_{uuid.uuid4().hex[:6]}"
    server = start_runtime(socket_dir, model_id)
    try:
        rows, notes = _overhead(socket_dir, model_id, options)
        capacity_rows, capacity_notes = _capacity(socket_dir, model_id, options)
        rows += capacity_rows
        notes += capacity_notes
        notes += _profile(socket_dir, model_id, options)
    finally:
        server.stop()
        shutil.rmtree(socket_dir, ignore_errors=True)
    return SectionResult(rows, notes)
