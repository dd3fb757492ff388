"""Shared fixtures: real daemons as subprocesses, real sockets, real shared memory.

Every fixture cleans up after itself, also when a test fails: daemons get
SIGTERM (then SIGKILL), rings are unlinked, socket directories removed.
Camera and model ids carry a random suffix so concurrent runs on one machine
never share a segment.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, NoReturn, Optional

import pytest

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.paths import socket_path
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR
from ruth_model_tools.frame_writer import FrameWriter

if TYPE_CHECKING:
    from ruth_ai_core.storage.database import Database
    from ruth_ai_core.storage.local_cluster import LocalCluster

STARTUP_TIMEOUT_S = 30.0


def unique_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def socket_dir() -> Iterator[Path]:
    """A short private socket directory (AF_UNIX paths are limited to 107 bytes)."""
    directory = Path(tempfile.mkdtemp(prefix="ruth-", dir="/tmp"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def camera_id() -> str:
    return unique_id("cam")


@pytest.fixture
def make_writer() -> Iterator[Callable[..., FrameWriter]]:
    """Create FrameWriters that are closed (segments unlinked) at teardown."""
    writers: list[FrameWriter] = []

    def make(camera_id: str, width: int = 640, height: int = 480, slot_count: int = 4, **kwargs: object) -> FrameWriter:
        writer = FrameWriter(camera_id, width, height, slot_count, **kwargs)
        writers.append(writer)
        return writer

    yield make
    for writer in writers:
        writer.close()


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


@pytest.fixture
def start_daemon(socket_dir: Path) -> Iterator[Callable[..., Daemon]]:
    """Start daemons (see launch_daemon); each is stopped at teardown and must leave no socket."""
    daemons: list[Daemon] = []

    def start(model_dir: Path = EXAMPLE_MODEL_DIR, **kwargs: object) -> Daemon:
        daemon = launch_daemon(model_dir, socket_dir, **kwargs)
        daemons.append(daemon)
        return daemon

    yield start
    for daemon in daemons:
        daemon.stop()
    for daemon in daemons:
        assert not daemon.socket.exists(), f"{daemon.socket} left behind"


@pytest.fixture
def example_daemon(start_daemon: Callable[..., Daemon]) -> Daemon:
    return start_daemon()


@pytest.fixture
def make_model(tmp_path: Path) -> Callable[..., Path]:
    """Write a model directory whose handler is the given Python source.

    ``handler_source`` defines class ``Handler``; ``limits`` and other
    model.yaml fields can be overridden with keyword arguments.
    """

    def make(handler_source: str, name: str = "model", **fields: object) -> Path:
        import yaml

        directory = tmp_path / name
        directory.mkdir()
        (directory / "handler.py").write_text(textwrap.dedent(handler_source))
        config = {
            "model_id": "test_model",
            "model_name": "Test model",
            "model_version": "0.1.0",
            "supported_tasks": ["detection"],
            "output_schema": {"classes": ["thing"]},
            "entry_point": "handler:Handler",
            "resources": {"device": "cpu"},
        }
        config.update(fields)
        (directory / "model.yaml").write_text(yaml.safe_dump(config))
        return directory

    return make


# -- databases: the same storage tests on SQLite and on a real PostgreSQL server ---------------


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


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator["LocalCluster"]:
    """A throwaway PostgreSQL server for the whole run (Unix socket in a temp dir); skipped without its binaries."""
    cluster = new_local_cluster()
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def pg_template(pg_cluster: "LocalCluster") -> str:
    """A database at the head revision, cloned (CREATE DATABASE ... TEMPLATE) for each test that needs one."""
    from ruth_ai_core.storage.database import Database

    url = pg_cluster.create_database("ruth_template")
    Database.open(url, upgrade=True).close()
    return "ruth_template"


@pytest.fixture
def postgres_url(pg_cluster: "LocalCluster", pg_template: str) -> Iterator[str]:
    """A fresh PostgreSQL database at head, dropped after the test (a plain postgresql:// URL)."""
    import psycopg

    name = unique_id("t").lower()
    with psycopg.connect(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield pg_cluster.url(name)
    pg_cluster.drop_database(name)


@pytest.fixture
def empty_postgres_url(pg_cluster: "LocalCluster") -> Iterator[str]:
    """A fresh PostgreSQL database with no schema at all (for migration tests)."""
    name = unique_id("e").lower()
    url = pg_cluster.create_database(name)
    yield url
    pg_cluster.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The same test on both backends: a SQLite file, then a PostgreSQL database, each fresh and at head."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ruth.sqlite3'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def database(database_url: str) -> Iterator["Database"]:
    """An open ``Database`` on ``database_url`` (SQLite upgraded on open; PostgreSQL already at head)."""
    from ruth_ai_core.storage.database import Database

    with Database.open(database_url) as db:
        yield db


@pytest.fixture
def own_pg_cluster() -> Iterator["LocalCluster"]:
    """A PostgreSQL server for one test, which it may stop and start (database outages); destroyed after."""
    cluster = new_local_cluster()
    try:
        cluster.init().start()
        yield cluster
    finally:
        cluster.destroy()
