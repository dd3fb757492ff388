"""Fixtures of the API suite: ``ruth-ai api`` as a real process on a real database, reached over real HTTP."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import pytest
import sqlalchemy as sa

from ruth_ai_core.storage.database import Database
from ruth_ai_core.storage.local_cluster import free_tcp_port

TOKEN = "test-admin-token-0123456789"


@dataclass
class ApiServer:
    process: subprocess.Popen
    url: str
    database_url: str
    token: Optional[str]
    log_path: Path

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, path: str, body: Any = None, token: Optional[str] = None,
             headers: Optional[dict[str, str]] = None) -> tuple[int, Any, dict[str, str]]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token is not None:
            request.add_header("Authorization", f"Bearer {token}")
        for key, value in (headers or {}).items():
            request.add_header(key, value)
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None, dict(response.headers)
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            return exc.code, json.loads(raw) if raw else None, dict(exc.headers)

    def admin(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        status, payload, _ = self.call(method, path, body, token=self.token)
        return status, payload

    def get(self, path: str) -> tuple[int, Any]:
        status, payload, _ = self.call("GET", path)
        return status, payload

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def start_api(database_url: str, tmp_path: Path, token: Optional[str] = TOKEN) -> ApiServer:
    port = free_tcp_port()
    args = [sys.executable, "-m", "ruth_ai_core.cli", "api", "--database", database_url, "--listen", f"127.0.0.1:{port}"]
    env = {k: v for k, v in os.environ.items() if k != "RUTH_AI_ADMIN_TOKEN"}
    if token is not None:
        token_file = tmp_path / f"token-{port}"
        token_file.write_text(token + "\n")
        args += ["--admin-token-file", str(token_file)]
    log_path = tmp_path / f"api-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = ApiServer(process, f"http://127.0.0.1:{port}", database_url, token, log_path)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"ruth-ai api exited with {process.returncode}:\n{server.log}")
        try:
            urllib.request.urlopen(server.url + "/openapi.json", timeout=1).read()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"ruth-ai api did not answer:\n{server.log}")
            time.sleep(0.05)


@pytest.fixture
def make_api(tmp_path: Path) -> Iterator[Callable[..., ApiServer]]:
    servers: list[ApiServer] = []

    def make(database_url: str, token: Optional[str] = TOKEN) -> ApiServer:
        server = start_api(database_url, tmp_path, token)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def shared_api(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One API process per backend for a whole module (starting one takes a second or two)."""
    tmp_path = tmp_path_factory.mktemp("api")
    name = None
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'api.sqlite3'}"
        Database.open(url).close()
    else:
        import psycopg

        cluster = request.getfixturevalue("pg_cluster")
        template = request.getfixturevalue("pg_template")
        name = f"api_{os.getpid()}_{free_tcp_port()}"
        with psycopg.connect(cluster.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        url = cluster.url(name)
    server = start_api(url, tmp_path)
    yield server
    server.stop()
    if name is not None:
        request.getfixturevalue("pg_cluster").drop_database(name)


@pytest.fixture
def api(shared_api: ApiServer) -> ApiServer:
    """The module's API of each backend, its database emptied first; admin token TOKEN."""
    with Database.open(shared_api.database_url) as db, db.write() as conn:
        for table in ("events", "assignments", "cameras", "model_version_tasks", "model_versions", "models"):
            conn.execute(sa.text(f"DELETE FROM {table}"))
    return shared_api
