"""The Docker engine and tools the docker suite needs: use them, skip without them, or fail when CI requires them.

CI (.ci/run) sets RUTH_REQUIRE_DOCKER=1 after starting an engine, so a missing
engine there is a failure, never a quiet skip. On a developer machine without
Docker the suite skips with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import NoReturn

import docker
import pytest
from docker.errors import DockerException

REQUIRE_ENV = "RUTH_REQUIRE_DOCKER"


def engine_required() -> bool:
    return os.environ.get(REQUIRE_ENV, "") not in ("", "0")


def unavailable(reason: str) -> NoReturn:
    """Fail when the engine is required, skip otherwise."""
    if engine_required():
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


def connect() -> docker.DockerClient:
    """A client for the engine in the environment (DOCKER_HOST or the default socket) that answers a ping."""
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except DockerException as exc:
        unavailable(f"no Docker engine: {exc}")
    return client


def compose_command() -> list[str]:
    """docker-compose (v1, what Debian ships) or the `docker compose` v2 plugin."""
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    unavailable("neither docker-compose nor the docker compose plugin is installed")
