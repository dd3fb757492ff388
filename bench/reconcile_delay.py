"""Reconcile section: time from an assignment committed in the database to the first frame sent for it.

End to end, every part real and its own process: the reference writer (25 fps
rings), the no-op model daemon, and ``ruth-ai run --node`` on a throwaway
PostgreSQL server (it LISTENs for the triggers' NOTIFY) and, as the
reference in the same run, on a SQLite file (polled every 0.5 s, the default
watch interval). The benchmark commits one new assignment at a time (a camera
the core does not run yet) and reads the core's events: the delay is the
first event's ``sent_at`` (the core's clock when it sent the request) minus
the moment just before the commit, both wall time on this host.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median

from ruth_ai_core.assignments import Assignment
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.storage.assignment_store import AssignmentStore
from ruth_ai_core.storage.database import Database
from ruth_ai_core.storage.local_cluster import ClusterUnavailable, LocalCluster, free_tcp_port

from .options import Options
from .procs import REPO_ROOT, start_runtime
from .table import Row, SectionResult, Target

SECTION = "reconcile"
NODE = "bench-node"
CAMERA_FPS = 25


def _first_sent_at(events_path: Path, camera: str, timeout_s: float = 10.0) -> float:
    deadline = time.monotonic() + timeout_s
    offset = 0
    while time.monotonic() < deadline:
        try:
            with events_path.open() as handle:
                handle.seek(offset)
                chunk = handle.read()
        except FileNotFoundError:
            chunk = ""
        complete = chunk[:chunk.rfind("\n") + 1]
        offset += len(complete)
        for line in complete.splitlines():
            event = json.loads(line)
            if event["camera_id"] == camera:
                return float(event["sent_at"])
        time.sleep(0.01)
    raise RuntimeError(f"no event for {camera} within {timeout_s}s")


def _measure(database_url: str, model_id: str, cameras: list[str], socket_dir: Path) -> list[float]:
    """Start ``ruth-ai run --node`` on ``database_url`` and assign ``cameras`` one by one; delays in seconds."""
    events_path = socket_dir / f"events-{uuid.uuid4().hex[:6]}.jsonl"
    log_path = socket_dir / f"core-{uuid.uuid4().hex[:6]}.log"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    with log_path.open("wb") as log:
        core = subprocess.Popen([sys.executable, "-m", "ruth_ai_core.cli", "run", "--node", NODE, "--database",
                                 database_url, "--events", str(events_path), "--socket-dir", str(socket_dir),
                                 "--metrics-port", str(free_tcp_port())], stdout=log, stderr=subprocess.STDOUT, env=env)
    delays = []
    pause = random.Random(12)  # commits at a random phase of the 0.5 s poll (the events file is flushed in step with it)
    try:
        with Database.open(database_url) as db:
            store = AssignmentStore(db)
            time.sleep(3.0)  # started, reconciled once, listening
            if core.poll() is not None:
                raise RuntimeError(f"ruth-ai run exited:\n{log_path.read_text()}")
            for camera in cameras:
                time.sleep(pause.uniform(0.3, 0.8))
                committed_before = time.time()
                store.put(Assignment(camera=camera, model=model_id, fps=5), node=NODE)
                delays.append(_first_sent_at(events_path, camera) - committed_before)
    finally:
        core.send_signal(signal.SIGTERM)
        try:
            core.wait(20)
        except subprocess.TimeoutExpired:
            core.kill()
            core.wait()
    return delays


def _p90(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(0.9 * (len(ordered) - 1))))]


def run(options: Options) -> SectionResult:
    try:
        cluster = LocalCluster(durable=True)
    except ClusterUnavailable as exc:
        return SectionResult([], [f"reconcile: skipped: {exc}"])
    count = int(options.scaled(20, 6))
    socket_dir = Path(tempfile.mkdtemp(prefix="brec-", dir="/tmp"))
    model_id = f"bench_noop_{uuid.uuid4().hex[:6]}"
    tag = uuid.uuid4().hex[:6]
    cameras = {backend: [f"r{tag}_{backend[:2]}_{i}" for i in range(count)] for backend in ("postgresql", "sqlite")}
    writer = None
    server = None
    try:
        cluster.init().start()
        urls = {"postgresql": cluster.create_database(), "sqlite": f"sqlite:///{socket_dir / 'registry.sqlite3'}"}
        server = start_runtime(socket_dir, model_id)
        for url in urls.values():
            with Database.open(url, upgrade=True) as db:
                ModelRegistry(db).import_from_daemon(server.socket)
        every = [c for names in cameras.values() for c in names]
        writer = subprocess.Popen([sys.executable, "-m", "ai_model_container.cli", "write-frames", "--source", "synthetic",
                                   "--fps", str(CAMERA_FPS), "--width", "320", "--height", "240",
                                   *sum((["--camera", c] for c in every), [])],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        time.sleep(2.0)
        delays = {backend: _measure(urls[backend], model_id, cameras[backend], socket_dir) for backend in urls}
    finally:
        if writer is not None:
            writer.send_signal(signal.SIGTERM)
            writer.wait(20)
        if server is not None:
            server.stop()
        cluster.destroy()
        shutil.rmtree(socket_dir, ignore_errors=True)
    pg, lite = delays["postgresql"], delays["sqlite"]
    rows = [
        Row(SECTION, "assignment committed -> first frame sent, p50 (PostgreSQL NOTIFY)", "ms", median(pg) * 1000,
            median(lite) * 1000, "SQLite, polled 0.5 s", Target("lower")),
        Row(SECTION, "assignment committed -> first frame sent, p90 (PostgreSQL NOTIFY)", "ms", _p90(pg) * 1000,
            _p90(lite) * 1000, "SQLite, polled 0.5 s", Target("lower")),
    ]
    notes = [f"reconcile: {count} assignments each, cameras at {CAMERA_FPS} fps; PostgreSQL delays ms: "
             f"{', '.join(f'{d * 1000:.0f}' for d in pg)}; SQLite delays ms: {', '.join(f'{d * 1000:.0f}' for d in lite)}; "
             f"max {max(pg) * 1000:.0f} / {max(lite) * 1000:.0f} ms"]
    return SectionResult(rows, notes)
