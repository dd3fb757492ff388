"""Helpers of the fault-injection suite: ``ruth-ai run`` as a process, a ring fed from a thread,
hostile files at a ring's path, and processes that run as another user.

Everything here drives real processes through their public surfaces (the socket, the ring,
the events file, the metrics endpoint, the log), never internal classes, so the tests keep
their meaning when the daemon's server or Core's data path is rewritten.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import testkit
import yaml
from prometheus_client.parser import text_string_to_metric_families

from ai_model_container.contract.shm_layout import SHM_DIR, segment_name
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

NOBODY_UID = NOBODY_GID = 65534


def ring_path(camera_id: str) -> str:
    return SHM_DIR + segment_name(camera_id)


def wait_for(condition: Callable[[], object], timeout_s: float = 15.0, **kwargs: Any) -> object:
    """testkit.wait_for with the longer default these tests need (a Core restart, a daemon drain)."""
    return testkit.wait_for(condition, timeout_s, **kwargs)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class RingFeeder:
    """Acts as VAS for one camera from a thread: synthetic frames at ``fps`` into a real ring.

    ``pause`` stops writing and unmaps without unlinking, so a test can then do to the ring
    what a hostile or broken writer would (truncate it, replace it) without this process ever
    touching the damaged mapping; ``start`` creates a fresh ring in its place.
    """

    def __init__(self, camera_id: str, fps: float = 25.0, width: int = 320, height: int = 240) -> None:
        self.camera_id = camera_id
        self.fps, self.width, self.height = fps, width, height
        self._writer: Optional[FrameWriter] = None
        self._thread: Optional[threading.Thread] = None
        self._stop = threading.Event()
        self._images = [synthetic_scene(index, width, height)[0] for index in range(8)]

    def start(self) -> "RingFeeder":
        self.pause()
        self._writer = FrameWriter(self.camera_id, self.width, self.height, 4)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(self._writer, self._stop), daemon=True)
        self._thread.start()
        return self

    def _run(self, writer: FrameWriter, stop: threading.Event) -> None:
        index = 0
        while not stop.wait(1.0 / self.fps):
            writer.write_bgr(self._images[index % len(self._images)])
            index += 1

    def pause(self) -> None:
        """Stop writing and unmap; the ring stays where it is."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None
        if self._writer is not None:
            self._writer.close(unlink=False)
            self._writer = None

    def stop(self) -> None:
        self.pause()
        remove_path(ring_path(self.camera_id))


def remove_path(path: str) -> None:
    """Remove whatever is at ``path`` (file, link, FIFO, socket, device or empty directory)."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            os.rmdir(path)
        else:
            os.unlink(path)
    except FileNotFoundError:
        pass


def write_assignments(path: Path, assignments: Sequence[dict]) -> None:
    """Replace the file atomically, the way an editor or a deployment tool does."""
    temporary = path.with_name(path.name + ".new")
    temporary.write_text(yaml.safe_dump({"assignments": list(assignments)}))
    os.replace(temporary, path)


def write_bytes_atomically(path: Path, content: bytes) -> None:
    temporary = path.with_name(path.name + ".new")
    temporary.write_bytes(content)
    os.replace(temporary, path)


class CoreProcess:
    """``ruth-ai run`` as a real process, observed through its events file, metrics endpoint and log."""

    def __init__(self, directory: Path, assignments: Path, socket_dir: Path, registry: Path,
                 routing: Optional[Path] = None, extra_args: Sequence[str] = (),
                 env: Optional[dict[str, str]] = None) -> None:
        self.events_path = directory / "events.jsonl"
        self.log_path = directory / "core.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/metrics"
        command = [sys.executable, "-m", "ruth_ai_core.cli", "run", "--assignments", str(assignments),
                   "--registry", str(registry), "--events", str(self.events_path), "--socket-dir", str(socket_dir),
                   "--metrics-port", str(self.port), "--health-interval", "0.2", "--watch-interval", "0.2",
                   *extra_args]
        if routing is not None:
            command += ["--routing", str(routing)]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, **(env or {})})

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def metrics(self) -> Optional[dict[str, list[tuple[dict[str, str], float]]]]:
        """Every sample of the metrics endpoint by name, or None if it does not answer."""
        try:
            text = urllib.request.urlopen(self.url, timeout=5).read().decode()
        except OSError:
            return None
        samples: dict[str, list[tuple[dict[str, str], float]]] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
        return samples

    def events(self, camera: Optional[str] = None, model: Optional[str] = None) -> list[dict]:
        if not self.events_path.exists():
            return []
        lines = self.events_path.read_text(errors="replace").splitlines()
        events = []
        for line in lines:
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # the last line may be half written
        return [e for e in events if (camera is None or e["camera_id"] == camera)
                and (model is None or e["model_id"] == model)]

    def results(self, camera: str, model: str) -> int:
        """Result events (no error) of one pair so far."""
        return sum(1 for e in self.events(camera, model) if e.get("error_code") is None)

    def wait_for_more_results(self, camera: str, model: str, more: int = 3, timeout_s: float = 15.0) -> None:
        start = self.results(camera, model)
        wait_for(lambda: self.results(camera, model) >= start + more or not self.alive, timeout_s,
                 message=f"{more} more results of {camera} -> {model}")
        assert self.alive, f"ruth-ai run died:\n{self.log[-4000:]}"

    def settle(self, camera: str, model: str, quiet_s: float = 0.5, timeout_s: float = 15.0) -> None:
        """Wait until the pair's events stop coming: with its ring no longer written, nothing is in flight."""
        seen = [len(self.events(camera, model)), time.monotonic()]

        def quiet() -> bool:
            count = len(self.events(camera, model))
            if count != seen[0]:
                seen[:] = [count, time.monotonic()]
            return time.monotonic() - seen[1] >= quiet_s

        wait_for(quiet, timeout_s, message=f"{camera} -> {model} to settle")

    def assert_serving(self) -> None:
        """Core is up and its metrics endpoint answers."""
        assert self.alive, f"ruth-ai run exited with {self.process.returncode}:\n{self.log[-4000:]}"
        assert self.metrics() is not None, "the metrics endpoint does not answer"

    def stop(self, timeout_s: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def run_python_as(uid: int, gid: int, source: str, *args: str, groups: Sequence[int] = (),
                  **popen: object) -> subprocess.Popen:
    """Run ``source`` in a fresh interpreter that drops to ``uid``:``gid`` (and ``groups``) when it calls ``become()``.

    The interpreter starts as this (root) process, so it may live where the other user cannot
    read; ``source`` must import what it needs before calling ``become()``.
    """
    prelude = (
        "import os\n"
        "def become():\n"
        f"    os.setgroups({list(groups)!r}); os.setgid({gid}); os.setuid({uid})\n"
    )
    return subprocess.Popen([sys.executable, "-c", prelude + source, *args], **popen)  # type: ignore[call-overload]
