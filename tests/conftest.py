"""Shared fixtures (their building blocks are in testkit.py): real daemons as subprocesses, real sockets, real shared memory.

Every fixture cleans up after itself, also when a test fails: daemons get
SIGTERM (then SIGKILL), rings are unlinked, socket directories removed.
Camera and model ids carry a random suffix so concurrent runs on one machine
never share a segment.
"""

from __future__ import annotations

import shutil
import tempfile
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

import pytest
from testkit import EXAMPLE_MODEL_DIR, Daemon, launch_daemon, new_local_cluster, unique_id

from ruth_model_tools.frame_writer import FrameWriter

if TYPE_CHECKING:
    from ruth_ai_core.storage.database import Database
    from ruth_ai_core.storage.local_cluster import LocalCluster


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


@pytest.fixture(scope="module")
def module_daemon() -> Iterator[Daemon]:
    """One example-model daemon for a whole module, for tests that only send requests."""
    directory = Path(tempfile.mkdtemp(prefix="ruth-", dir="/tmp"))
    daemon = launch_daemon(EXAMPLE_MODEL_DIR, directory)
    yield daemon
    try:
        assert daemon.stop() == 0, daemon.log
    finally:
        shutil.rmtree(directory, ignore_errors=True)


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
