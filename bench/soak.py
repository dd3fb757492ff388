"""``python -m bench.soak --cameras N --minutes M``: the whole chain for a bounded time, watched for growth.

Runs what a deployment runs, as separate processes: the reference VAS writer (``ruth-model
write-frames``) feeding N synthetic cameras, ``ruth-model serve-all`` over the example model (which
reads the pixels) and the benchmark no-op model, and ``ruth-ai run`` with every camera assigned to
both models. Every ``--sample-s`` seconds it prints Core's counts from its metrics endpoint
(selected, results, errors, drops, in flight: selected must equal the other four) and the resident
memory and open descriptors of Core, serve-all and each model process. At the end Core is stopped,
its exact final counts are read from its log, and each process gets a verdict on growth after the
warm-up: flat, levels off (grew, then stopped), or GROWS (still growing in the second half); sockets are
judged against what the process may hold (Core opens its model connections lazily).

``--tracemalloc`` runs Core under tracemalloc (slower), dumps a snapshot every sample, and at the end
prints the allocation sites that grew most between the first sample after the warm-up and the last,
which tells a leak (a site that keeps growing) from a plateau (caches and allocator arenas filling).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import yaml

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.paths import socket_path
from ruth_ai_core.registry import ModelRegistry
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR

from .core_metrics import CoreCounts, scrape_core
from .proc_stats import children, command_line, fd_count, rss_by_kind, rss_kib, socket_count
from .procs import NOOP_MODEL_DIR, REPO_ROOT

FPS_PER_PAIR = 5.0
CAMERA_FPS = 15.0
WIDTH, HEIGHT = 640, 480
RSS_TOLERANCE_MIB = 2.0
"""Growth after the warm-up under which memory counts as flat (allocator and cache noise); half of it in
the second half of the run counts as still growing."""
FD_TOLERANCE = 1
CONNECTIONS = 4
"""Core's connections per model (--connections), opened lazily: sockets may grow up to this bound."""

TRACEMALLOC_WRAPPER = """
import gc, sys, threading, time, tracemalloc
directory, interval, frames = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
tracemalloc.start(frames)
def dump():
    index = 0
    while True:
        time.sleep(interval)
        gc.collect()
        tracemalloc.take_snapshot().dump(f"{directory}/core-{index:04d}.snapshot")
        index += 1
threading.Thread(target=dump, name="tracemalloc-dump", daemon=True).start()
from ruth_ai_core.cli import main
sys.argv = ["ruth-ai", *sys.argv[4:]]
main()
"""


@dataclass
class Watched:
    name: str
    pid: int
    socket_bound: int
    """Most sockets the process may hold (listeners, pooled connections): more is a leak."""
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    """(seconds since start, RSS KiB, descriptors other than sockets)"""
    sockets: list[int] = field(default_factory=list)
    kinds: list[tuple[float, dict[str, int]]] = field(default_factory=list)
    """(seconds since start, resident KiB by kind of mapping)"""

    def sample(self, elapsed: float) -> Optional[tuple[int, int]]:
        rss, fds, sockets = rss_kib(self.pid), fd_count(self.pid), socket_count(self.pid)
        if rss is None or fds is None or sockets is None:
            return None
        self.samples.append((elapsed, rss, fds - sockets))
        self.sockets.append(sockets)
        self.kinds.append((elapsed, rss_by_kind(self.pid)))
        return rss, fds

    def where(self, warmup_s: float) -> str:
        """Growth after the warm-up by kind of mapping, largest first."""
        after = [k for k in self.kinds if k[0] >= warmup_s] or self.kinds[-1:]
        if len(after) < 2:
            return ""
        first, last = after[0][1], after[-1][1]
        deltas = sorted(((last.get(kind, 0) - first.get(kind, 0), kind) for kind in set(first) | set(last)),
                        reverse=True)
        return ", ".join(f"{kind} {delta / 1024:+.2f}" for delta, kind in deltas if delta)

    def verdict(self, warmup_s: float) -> str:
        """Growth after the warm-up, judged on its second half: a pool that opens connections lazily or an
        allocator filling its arenas grows early and levels off; a leak keeps growing to the end."""
        after = [s for s in self.samples if s[0] >= warmup_s] or self.samples[-1:]
        if len(after) < 3:
            return f"{self.name}: too short to judge"
        (t0, rss0, fds0), (t1, rss1, fds1) = after[0], after[-1]
        _, rss_half, _ = after[len(after) // 2]
        fds_half = max(fds for _, _, fds in after[: len(after) // 2 + 1])
        grown_mib, late_mib = (rss1 - rss0) / 1024, (rss1 - rss_half) / 1024
        per_hour = grown_mib / ((t1 - t0) / 3600)
        rss_text = (f"RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB ({grown_mib:+.2f} MiB, {per_hour:+.1f} MiB/h; "
                    f"{late_mib:+.2f} in the second half)")
        memory = "GROWS" if late_mib > RSS_TOLERANCE_MIB / 2 else "flat" if grown_mib <= RSS_TOLERANCE_MIB else "levels off"
        handles = "GROWS" if fds1 - fds_half > FD_TOLERANCE else "flat" if fds1 - fds0 <= FD_TOLERANCE else "levels off"
        sockets = self.sockets[len(self.samples) - len(after):]
        within = f"within the bound of {self.socket_bound}" if max(sockets) <= self.socket_bound else "GROWS past its bound"
        return (f"{self.name}: memory {memory}, {rss_text}; other descriptors {handles}, {fds0} -> {fds1}; "
                f"sockets {within} ({sockets[0]} -> {sockets[-1]}, at most {max(sockets)})")


def scrape(url: str) -> Optional[CoreCounts]:
    try:
        return scrape_core(url, timeout_s=5)
    except OSError:
        return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Soak:
    def __init__(self, cameras: int, minutes: float, sample_s: float, warmup_s: float,
                 tracemalloc_frames: Optional[int]) -> None:
        self.cameras = [f"soak_{uuid.uuid4().hex[:6]}_{index}" for index in range(cameras)]
        self.seconds = minutes * 60
        self.sample_s = sample_s
        self.warmup_s = warmup_s
        self.tracemalloc_frames = tracemalloc_frames
        self.directory = Path(tempfile.mkdtemp(prefix="ruth-soak-", dir="/tmp"))
        self.socket_dir = self.directory / "sockets"
        self.snapshots = self.directory / "snapshots"
        self.port = free_port()
        self.processes: dict[str, subprocess.Popen] = {}
        self.watched: list[Watched] = []

    # -- the chain -----------------------------------------------------------------------

    def _models(self) -> list[tuple[str, Path]]:
        root = self.directory / "models"
        models = []
        for source, model_id in ((EXAMPLE_MODEL_DIR, "soak_example"), (NOOP_MODEL_DIR, "soak_noop")):
            target = root / model_id
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            config = yaml.safe_load((target / "model.yaml").read_text())
            config["model_id"] = model_id
            config.pop("expected_resolution", None)
            (target / "model.yaml").write_text(yaml.safe_dump(config))
            models.append((model_id, target))
        return models

    def _spawn(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (self.directory / f"{name}.log").open("wb")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        log.close()
        self.processes[name] = process
        return process

    def start(self) -> None:
        self.socket_dir.mkdir()
        models = self._models()
        writer = [sys.executable, "-m", "ai_model_container.daemon.cli", "write-frames", "--source", "synthetic",
                  "--fps", str(CAMERA_FPS), "--width", str(WIDTH), "--height", str(HEIGHT)]
        for camera in self.cameras:
            writer += ["--camera", camera]
        self._spawn("writer", writer)
        serve_all = self._spawn("serve-all", [sys.executable, "-m", "ai_model_container.daemon.cli", "serve-all",
                                              str(self.directory / "models"), "--socket-dir", str(self.socket_dir)])
        registry_path = self.directory / "registry.sqlite3"
        with ModelRegistry(registry_path) as registry:
            for _, directory in models:
                registry.import_model_yaml(directory / "model.yaml")
        for model_id, _ in models:
            self._wait_healthy(model_id)
        assignments = self.directory / "assignments.yaml"
        assignments.write_text(yaml.safe_dump({"assignments": [
            {"camera": camera, "model": model_id, "fps": FPS_PER_PAIR} for camera in self.cameras for model_id, _ in models
        ]}))
        core_args = ["run", "--assignments", str(assignments), "--registry", str(registry_path),
                     "--events", str(self.directory / "events.jsonl"), "--socket-dir", str(self.socket_dir),
                     "--metrics-port", str(self.port), "--connections", str(CONNECTIONS)]
        if self.tracemalloc_frames:
            self.snapshots.mkdir()
            command = [sys.executable, "-c", TRACEMALLOC_WRAPPER, str(self.snapshots), str(self.sample_s),
                       str(self.tracemalloc_frames), *core_args]
        else:
            command = [sys.executable, "-m", "ruth_ai_core.cli", *core_args]
        core = self._spawn("core", command)
        # Core: a probe and up to CONNECTIONS connections per model, and the metrics listener and its client.
        # A daemon: its listener and Core's connections to it. serve-all: a stand-in's listener at most.
        self.watched = [Watched("core", core.pid, len(models) * (CONNECTIONS + 1) + 2),
                        Watched("serve-all", serve_all.pid, len(models))]
        for pid in children(serve_all.pid):
            name = Path(command_line(pid).split(" serve ", 1)[-1].split()[0]).name
            self.watched.append(Watched(f"daemon {name}", pid, CONNECTIONS + 2))

    def _wait_healthy(self, model_id: str, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                with ModelClient(socket_path(model_id, str(self.socket_dir)), connect_timeout_s=0.5) as client:
                    if client.health().ready:
                        return
            except ClientError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"{model_id} not ready after {timeout_s}s")

    def _check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                log = (self.directory / f"{name}.log").read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{log}")

    # -- watching ----------------------------------------------------------------------

    def run(self) -> int:
        self.start()
        url = f"http://127.0.0.1:{self.port}/metrics"
        started = time.monotonic()
        header = (f"{'t s':>6} {'selected':>9} {'results':>8} {'errors':>7} {'drops':>6} {'in fl':>5} {'unacc':>5}  "
                  + "  ".join(f"{w.name + ' MiB/fds':>22}" for w in self.watched))
        print(header, flush=True)
        next_sample = 0.0
        while True:
            elapsed = time.monotonic() - started
            if elapsed >= next_sample:
                self._check_alive()
                counts = scrape(url) or CoreCounts()
                cells = []
                for watched in self.watched:
                    value = watched.sample(elapsed)
                    cells.append(f"{value[0] / 1024:.1f}/{value[1]}" if value else "gone")
                print(f"{elapsed:6.0f} {counts.selected:9.0f} {counts.results:8.0f} {counts.errors:7.0f} "
                      f"{counts.dropped:6.0f} {counts.outstanding:5.0f} {counts.balance:5.0f}  "
                      + "  ".join(f"{cell:>22}" for cell in cells), flush=True)
                next_sample += self.sample_s
            if elapsed >= self.seconds:
                break
            time.sleep(min(1.0, max(0.0, next_sample - elapsed)))
        return self.finish()

    def finish(self) -> int:
        core = self.processes["core"]
        core.send_signal(signal.SIGTERM)
        code = core.wait(60)
        log = (self.directory / "core.log").read_text(errors="replace")
        print()
        final = re.search(r"stopped: selected=(\d+) results=(\d+) errors=(\d+) dropped=(\{[^}]*\}) in_flight=(\d+)", log)
        ok = code == 0 and final is not None
        if final is not None:
            selected, results, errors, in_flight = (int(final.group(i)) for i in (1, 2, 3, 5))
            reasons = json.loads(final.group(4))
            drops = sum(reasons.values())
            balanced = selected == results + errors + drops + in_flight
            ok &= balanced
            print(f"final (Core's log): selected {selected} = results {results} + errors {errors} + drops {drops} "
                  f"+ in flight {in_flight}: {'balanced' if balanced else 'NOT BALANCED'}")
            print(f"drops by reason: {json.dumps(reasons, sort_keys=True)}; errors by code: "
                  f"{json.dumps(self._error_codes(), sort_keys=True)}")
        else:
            print(f"Core exited with {code} and no final counts")
        print(f"growth after the {self.warmup_s:.0f} s warm-up:")
        for watched in self.watched:
            verdict = watched.verdict(self.warmup_s)
            if self.tracemalloc_frames and watched.name == "core":
                print(f"  {verdict} (tracemalloc's own tables included: judged by the traced memory below)")
                continue
            print(f"  {verdict}")
            where = watched.where(self.warmup_s)
            if where:
                print(f"    by mapping, MiB: {where}")
            ok &= "GROWS" not in verdict
        if self.tracemalloc_frames:
            ok &= self.report_tracemalloc()
        print("verdict: " + ("no growth, nothing lost" if ok else "PROBLEM (see above)"))
        return 0 if ok else 1

    def _error_codes(self) -> dict[str, int]:
        codes: dict[str, int] = {}
        with (self.directory / "events.jsonl").open(errors="replace") as events:
            for line in events:
                try:
                    code = json.loads(line).get("error_code")
                except ValueError:
                    continue
                if code is not None:
                    codes[code] = codes.get(code, 0) + 1
        return codes

    def report_tracemalloc(self, top: int = 12) -> bool:
        """Print what grew in Core's Python heap after the warm-up; False if it grew past the tolerance."""
        snapshots = sorted(self.snapshots.glob("core-*.snapshot"))
        first_index = max(0, int(self.warmup_s // self.sample_s) - 1)
        if len(snapshots) < first_index + 2:
            print("tracemalloc: not enough snapshots")
            return False
        first = tracemalloc.Snapshot.load(str(snapshots[first_index]))
        last = tracemalloc.Snapshot.load(str(snapshots[-1]))
        before = sum(stat.size for stat in first.statistics("filename")) / 1024
        after = sum(stat.size for stat in last.statistics("filename")) / 1024
        flat = after - before <= RSS_TOLERANCE_MIB * 1024
        print(f"tracemalloc ({snapshots[first_index].name} -> {snapshots[-1].name}): Python heap traced "
              f"{before:.0f} -> {after:.0f} KiB ({after - before:+.1f} KiB): {'flat' if flat else 'GROWS'}")
        print("  top changes by line:")
        for stat in last.compare_to(first, "lineno")[:top]:
            frame = stat.traceback[0]
            print(f"  {stat.size_diff / 1024:+9.1f} KiB {stat.count_diff:+7d} blocks  {frame.filename}:{frame.lineno}")
        return flat

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cameras", type=int, default=4)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--sample-s", type=float, default=30.0, help="seconds between samples")
    parser.add_argument("--warmup-s", type=float, default=60.0, help="growth is judged from here on")
    parser.add_argument("--tracemalloc", type=int, nargs="?", const=10, default=None, metavar="FRAMES",
                        help="run Core under tracemalloc keeping FRAMES frames per allocation (default 10)")
    args = parser.parse_args(argv)
    soak = Soak(args.cameras, args.minutes, args.sample_s, args.warmup_s, args.tracemalloc)
    print(f"python -m bench.soak {' '.join(argv)}".rstrip())
    print(f"{args.cameras} cameras at {CAMERA_FPS:g} fps ({WIDTH}x{HEIGHT}), each assigned to soak_example and "
          f"soak_noop at {FPS_PER_PAIR:g} fps; {args.minutes:g} min, a sample every {args.sample_s:g} s", flush=True)
    try:
        return soak.run()
    finally:
        soak.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
