"""Fixtures of the runtime suite: a steerable model, gates into a running handler, raw segments."""

from __future__ import annotations

import mmap
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Iterator

import posix_ipc
import pytest
import yaml
from testkit import Daemon, launch_daemon, unique_id

from ai_model_container.contract.shm_layout import segment_name

from .helpers import CONTROLLED_HANDLER, wait_for_file

MODEL_FIELDS = {
    "model_id": "controlled",
    "model_name": "Controlled test model",
    "model_version": "0.1.0",
    "supported_tasks": ["detection"],
    "output_schema": {"classes": ["thing"]},
    "entry_point": "controlled_handler:Handler",
    "resources": {"device": "cpu"},
}


def write_controlled_model(directory: Path, **fields: object) -> Path:
    """A model directory served by helpers.CONTROLLED_HANDLER; ``fields`` override model.yaml keys."""
    directory.mkdir(parents=True)
    (directory / "controlled_handler.py").write_text(CONTROLLED_HANDLER)
    (directory / "model.yaml").write_text(yaml.safe_dump({**MODEL_FIELDS, **fields}))
    return directory


@pytest.fixture
def controlled_model(tmp_path: Path) -> Callable[..., Path]:
    """Model directories served by the steerable handler in helpers.CONTROLLED_HANDLER."""
    count = 0

    def make(**fields: object) -> Path:
        nonlocal count
        count += 1
        return write_controlled_model(tmp_path / f"controlled{count}", **fields)

    return make


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """One steerable daemon for a whole module, for tests that only send requests."""
    model_dir = write_controlled_model(tmp_path_factory.mktemp("shared") / "model")
    directory = Path(tempfile.mkdtemp(prefix="ruth-", dir="/tmp"))
    daemon = launch_daemon(model_dir, directory)
    yield daemon
    try:
        assert daemon.stop() == 0, daemon.log
        assert not daemon.socket.exists()
    finally:
        shutil.rmtree(directory, ignore_errors=True)


class Gate:
    """A rendezvous with a handler's preprocess, which runs in the daemon process."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @property
    def config(self) -> dict[str, str]:
        return {"gate": str(self.directory)}

    def wait_entered(self, timeout_s: float = 10.0) -> None:
        wait_for_file(self.directory / "entered", timeout_s)

    def release(self) -> None:
        (self.directory / "release").touch()


@pytest.fixture
def make_gate(tmp_path: Path) -> Callable[[], Gate]:
    def make() -> Gate:
        return Gate(Path(tempfile.mkdtemp(prefix="gate-", dir=tmp_path)))

    return make


@pytest.fixture
def make_segment() -> Iterator[Callable[[str, bytes], None]]:
    """Create hand-crafted /dev/shm/vas_frames_<camera> segments holding exact bytes; unlinked at teardown."""
    names: list[str] = []

    def make(camera_id: str, content: bytes) -> None:
        name = segment_name(camera_id)
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=0o644, size=len(content))
        names.append(name)
        try:
            if content:
                with mmap.mmap(shm.fd, len(content)) as buffer:
                    buffer[:] = content
        finally:
            shm.close_fd()

    yield make
    for name in names:
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            pass


@pytest.fixture
def spawn_daemon(socket_dir: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons that may be expected to fail (no readiness wait, no socket assertion); stopped at teardown."""
    daemons: list[Daemon] = []

    def spawn(model_dir: Path, **kwargs: object) -> Daemon:
        kwargs.setdefault("wait_ready", False)
        daemon = launch_daemon(model_dir, socket_dir, **kwargs)
        daemons.append(daemon)
        return daemon

    yield spawn
    for daemon in daemons:
        daemon.stop()


@pytest.fixture
def model_id() -> str:
    return unique_id("model")
