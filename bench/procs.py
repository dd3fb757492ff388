"""Server processes under test, and their CPU time.

Each server runs in its own process so its CPU time can be read from
/proc/<pid>/stat (user + system, all threads) before and after a load phase,
without a psutil dependency.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.paths import socket_path

REPO_ROOT = Path(__file__).resolve().parents[1]
NOOP_MODEL_DIR = Path(__file__).resolve().parent / "noop_model"
STARTUP_TIMEOUT_S = 60.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its threads so far."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        data = handle.read()
    fields = data[data.rindex(b")") + 2:].split()
    # fields[0] is stat field 3 (state); utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def rss_bytes(pid: int) -> int:
    """Resident set size of a process now."""
    with open(f"/proc/{pid}/statm", "rb") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@dataclass
class ServerProcess:
    name: str
    process: subprocess.Popen
    socket: Path
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} server exited with {self.process.returncode}:\n"
                               f"{self.log_path.read_text(errors='replace')}")


def _launch(name: str, command: list[str], sock: Path, log_path: Path,
            env: Optional[dict[str, str]] = None) -> ServerProcess:
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPO_ROOT,
                                   env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **(env or {})})
    return ServerProcess(name, process, sock, log_path)


def start_runtime(socket_dir: Path, model_id: str, model_dir: Path = NOOP_MODEL_DIR,
                  device: Optional[str] = None) -> ServerProcess:
    """``ruth-model serve`` on a model (the no-op one by default): the real daemon, as deployed."""
    sock = socket_path(model_id, str(socket_dir))
    server = _launch("runtime", [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(model_dir),
                                 "--socket-dir", str(socket_dir), "--model-id", model_id],
                     sock, socket_dir / f"{model_id}.log", {"RUTH_DEVICE": device} if device else {})
    _wait_until(server, lambda: _health_answers(sock))
    return server


@contextlib.contextmanager
def launch_model(model_dir: Path, socket_dir: Path, model_id: str,
                 device: Optional[str] = None) -> Iterator[ServerProcess]:
    """``start_runtime`` for the length of a with-block; the daemon is stopped (SIGTERM) on the way out."""
    server = start_runtime(socket_dir, model_id, model_dir, device)
    try:
        yield server
    finally:
        server.stop()


def start_baseline(socket_dir: Path) -> ServerProcess:
    sock = socket_dir / "baseline.sock"
    server = _launch("baseline", [sys.executable, "-m", "bench.baseline_server", str(sock)],
                     sock, socket_dir / "baseline.log")
    _wait_until(server, lambda: _accepts(sock))
    return server


def _wait_until(server: ServerProcess, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not ready():
        server.check_alive()
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"{server.name} server not ready after {STARTUP_TIMEOUT_S}s")
        time.sleep(0.05)


def _health_answers(sock: Path) -> bool:
    try:
        with ModelClient(sock, connect_timeout_s=0.5) as client:
            client.health()
        return True
    except ClientError:
        return False


def _accepts(sock: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(str(sock))
        return True
    except OSError:
        return False
    finally:
        probe.close()
