"""Fixtures of the core suite: real daemons (from the root conftest), real rings, a Core in-process."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from testkit import unique_id

from ruth_ai_core.core import Core
from ruth_ai_core.events import JsonLinesSink
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.router import RouteSettings

from .helpers import Publisher


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[ModelRegistry]:
    with ModelRegistry(tmp_path / "registry.sqlite3") as reg:
        yield reg


@pytest.fixture
def publisher() -> Iterator[Callable[..., Publisher]]:
    """Start background writers; all are stopped (segments unlinked) at teardown."""
    started: list[Publisher] = []

    def start(cameras: list[str], **kwargs: object) -> Publisher:
        pub = Publisher(cameras, **kwargs).start()
        started.append(pub)
        return pub

    yield start
    for pub in started:
        pub.stop()


@pytest.fixture
def make_core(tmp_path: Path, socket_dir: Path) -> Iterator[Callable[..., Core]]:
    """A Core writing events to tmp_path/events.jsonl, probing health every 0.1 s; stopped at teardown."""
    cores: list[Core] = []

    def make(**settings: object) -> Core:
        options = {"health_interval_s": 0.1, "request_timeout_s": 5.0, **settings}
        core = Core(JsonLinesSink(tmp_path / "events.jsonl"), settings=RouteSettings(**options),
                    socket_dir=str(socket_dir))
        cores.append(core)
        return core

    yield make
    for core in cores:
        core.stop()
        core.sink.close()


@pytest.fixture
def cameras() -> list[str]:
    return [unique_id("cam"), unique_id("cam")]
