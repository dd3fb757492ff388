"""Fixtures of the fault-injection suite: hostile ring paths, fed rings, ``ruth-ai run`` processes."""

from __future__ import annotations

import dataclasses
import os
import socket
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np
import pytest
from testkit import Daemon, unique_id

from ai_model_container.contract.shm_layout import SegmentHeader
from ruth_ai_core.registry import ModelRegistry
from ruth_model_tools.frame_writer import FrameWriter

from .helpers import CoreProcess, RingFeeder, remove_path, ring_path

WIDTH, HEIGHT = 320, 240


def _sparse(path: str, content: bytes, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(content)
        handle.truncate(size)
    os.chmod(path, 0o644)


def _bind(path: str) -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(path)  # the file stays after the socket closes


def _world_writable_ring(path: str) -> None:
    """A real ring with one frame, but mode 0666: any local user could truncate it under a reader."""
    writer = FrameWriter(os.path.basename(path)[len("vas_frames_"):], WIDTH, HEIGHT, 2, mode=0o666)
    writer.write_bgr(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    writer.close(unlink=False)


def _huge_layout_header() -> bytes:
    """A valid-looking header whose slots are 1 TiB each: a layout no reader should map."""
    header = dataclasses.replace(SegmentHeader.plan(WIDTH, HEIGHT, 2), slot_size=1 << 40)
    content = bytearray(64)
    header.pack_into(content)
    return bytes(content)


HOSTILE_KINDS: dict[str, tuple[Callable[[str, str], None], str]] = {
    # kind: (make it at the ring's path, what FRAME_INVALID's reason must say)
    "fifo": (lambda path, other: os.mkfifo(path, 0o644), "FIFO"),
    "directory": (lambda path, other: os.mkdir(path), "directory"),
    "unix socket": (lambda path, other: _bind(path), "socket"),
    "symlink to a real ring": (lambda path, other: os.symlink(other, path), "symbolic link"),
    "dangling symlink": (lambda path, other: os.symlink(path + ".nowhere", path), "symbolic link"),
    "symlink loop": (lambda path, other: os.symlink(path, path), "symbolic link"),
    "sparse 1 PiB of zeros": (lambda path, other: _sparse(path, b"", 1 << 50), "magic"),
    "garbage": (lambda path, other: _sparse(path, os.urandom(65536), 65536), "magic"),
    "header of a 2 TiB layout on a sparse file": (
        lambda path, other: _sparse(path, _huge_layout_header(), 3 << 40), "more than"),
    "world-writable ring": (lambda path, other: _world_writable_ring(path), "writable by every user"),
}


@pytest.fixture
def hostile_ring() -> Iterator[Callable[[str, str], str]]:
    """Put a hostile thing of ``kind`` at a camera's ring path; returns the reason FRAME_INVALID must give."""
    made: list[str] = []

    def make(camera_id: str, kind: str) -> str:
        path = ring_path(camera_id)
        other = ring_path(camera_id + "_target")
        made.extend([path, other])
        if kind == "symlink to a real ring":
            FrameWriter(camera_id + "_target", WIDTH, HEIGHT, 2).close(unlink=False)
        create, reason = HOSTILE_KINDS[kind]
        create(path, other)
        return reason

    yield make
    for path in made:
        remove_path(path)


@pytest.fixture
def feeder() -> Iterator[Callable[..., RingFeeder]]:
    """Rings fed from a thread (helpers.RingFeeder); stopped and unlinked at teardown."""
    feeders: list[RingFeeder] = []

    def make(camera_id: str, **kwargs: object) -> RingFeeder:
        feeder = RingFeeder(camera_id, **kwargs)  # type: ignore[arg-type]
        feeders.append(feeder)
        return feeder

    yield make
    for feeder in feeders:
        feeder.stop()


@pytest.fixture
def model_id() -> str:
    return unique_id("model")


@pytest.fixture
def registry_path(tmp_path: Path) -> Path:
    return tmp_path / "registry.sqlite3"


@pytest.fixture
def register(registry_path: Path) -> Callable[[Daemon], None]:
    """Import a running daemon's model into the test registry (what `ruth-ai models import --from-daemon` does)."""

    def register(daemon: Daemon) -> None:
        with ModelRegistry(registry_path) as registry:
            registry.import_from_daemon(daemon.socket)

    return register


@pytest.fixture
def core_process(tmp_path: Path, socket_dir: Path, registry_path: Path) -> Iterator[Callable[..., CoreProcess]]:
    """Start ``ruth-ai run`` processes on the test's registry; models are looked for in ``daemons_dir``
    (default: the test's socket directory). Stopped at teardown."""
    cores: list[CoreProcess] = []

    def start(assignments: Path, daemons_dir: Optional[Path] = None, **kwargs: object) -> CoreProcess:
        core = CoreProcess(tmp_path, assignments, daemons_dir or socket_dir, registry_path,
                           **kwargs)  # type: ignore[arg-type]
        cores.append(core)
        return core

    yield start
    for core in cores:
        core.stop()
