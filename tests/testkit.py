"""What the test suites share besides fixtures: real daemons as subprocesses, ids, prerequisites.

Test modules and sub-suites' conftest files import these by name (``from testkit import ...``);
the fixtures built on them live in tests/conftest.py. A module of its own, because every
conftest.py is imported under the one name ``conftest``, so importing from it reaches whichever
conftest was loaded last rather than this suite's root.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, NoReturn, Optional

import pytest

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.paths import socket_path
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR

if TYPE_CHECKING:
    from ruth_ai_core.storage.local_cluster import LocalCluster

__all__ = ["EXAMPLE_MODEL_DIR", "PG_REQUIRE_ENV", "STARTUP_TIMEOUT_S", "Daemon", "launch_daemon",
           "new_local_cluster", "skip_unless_required", "unique_id", "wait_for"]

STARTUP_TIMEOUT_S = 30.0


def unique_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@dataclass
class Daemon:
    """A model daemon running as a real subprocess."""

    process: subprocess.Popen
    model_id: str
    socket: Path
    log_path: Path

    def client(self, **kwargs: object) -> ModelClient:
        return ModelClient(self.socket, **kwargs)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def launch_daemon(model_dir: Path, socket_dir: Path, model_id: Optional[str] = None,
                  env: Optional[dict[str, str]] = None, wait_ready: bool = True) -> Daemon:
    """Start ``ruth-model serve`` on ``model_dir`` and wait until its health op answers."""
    model_id = model_id or unique_id("model")
    log_path = socket_dir / f"{model_id}.log"
    command = [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(model_dir),
               "--socket-dir", str(socket_dir), "--model-id", model_id, "--drain-timeout", "5"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env={**os.environ, **(env or {})})
    daemon = Daemon(process, model_id, socket_path(model_id, str(socket_dir)), log_path)
    if wait_ready:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"daemon exited with {process.returncode}:\n{daemon.log}")
            try:
                with daemon.client(connect_timeout_s=0.5) as client:
                    client.health()
                break
            except ClientError:
                if time.monotonic() > deadline:
                    daemon.stop(signal.SIGKILL)
                    raise RuntimeError(f"daemon not ready after {STARTUP_TIMEOUT_S}s:\n{daemon.log}")
                time.sleep(0.05)
    return daemon


PG_REQUIRE_ENV = "RUTH_REQUIRE_POSTGRES"
"""CI (.ci/run) sets it: a missing PostgreSQL server is then a failure, never a quiet skip."""


def new_local_cluster(**settings: object) -> "LocalCluster":
    """A LocalCluster (not started); skips without server binaries, or fails when $RUTH_REQUIRE_POSTGRES is set."""
    from ruth_ai_core.storage.local_cluster import ClusterUnavailable, LocalCluster

    try:
        return LocalCluster(**settings)  # type: ignore[arg-type]
    except ClusterUnavailable as exc:
        skip_unless_required(f"no PostgreSQL server to test against: {exc}", PG_REQUIRE_ENV)


def skip_unless_required(reason: str, require_env: str) -> NoReturn:
    """Skip the test for ``reason``, or fail it when ``$require_env`` is set (CI: a missing prerequisite is a bug)."""
    if os.environ.get(require_env, "") not in ("", "0"):
        pytest.fail(f"{reason} ({require_env} is set)", pytrace=False)
    pytest.skip(reason)


def wait_for(condition: Callable[[], object], timeout_s: float = 10.0, interval_s: float = 0.05,
             message: str = "condition") -> object:
    """Poll ``condition`` until it returns something true (and return that), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s}s waiting for {message}")
        time.sleep(interval_s)
