"""Without an engine the docker suite skips, unless CI requires it (RUTH_REQUIRE_DOCKER=1): then it fails."""

from __future__ import annotations

import pytest
from docker_engine import REQUIRE_ENV, connect

pytestmark = pytest.mark.docker


@pytest.fixture
def no_engine(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")


def test_a_missing_engine_skips_when_not_required(no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no Docker engine"):
        connect()


@pytest.mark.parametrize("value", ["1", "yes"])
def test_a_missing_engine_fails_when_required(no_engine: None, monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv(REQUIRE_ENV, value)
    with pytest.raises(pytest.fail.Exception, match=f"no Docker engine.*{REQUIRE_ENV}"):
        connect()


def test_zero_means_not_required(no_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(REQUIRE_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        connect()
