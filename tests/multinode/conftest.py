"""The three-node scenario (``bench.multinode``), run once for the module's tests to read.

It needs root and iproute2: without them the tests are skipped, saying why,
and fail instead when $RUTH_REQUIRE_MULTINODE is set (CI). The scenario tears
down its namespaces, processes, mounts and PostgreSQL server on every path;
the logs of its processes are shown when it fails.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from testkit import PG_REQUIRE_ENV, skip_unless_required

from bench.multinode import Result, run_scenario
from bench.netns import NamespacesUnavailable, check_available
from ruth_ai_core.storage.local_cluster import ClusterUnavailable

MULTINODE_REQUIRE_ENV = "RUTH_REQUIRE_MULTINODE"
"""CI (.ci/run) sets it: no namespaces to build the nodes from is then a failure, never a quiet skip."""


@pytest.fixture(scope="module")
def scenario() -> Iterator[Result]:
    try:
        check_available()
    except NamespacesUnavailable as exc:
        skip_unless_required(f"no network namespaces for the multi-node test: {exc}", MULTINODE_REQUIRE_ENV)
    log_dir = Path(tempfile.mkdtemp(prefix="ruth-mn-", dir="/tmp"))
    try:
        yield run_scenario(log_dir)
    except ClusterUnavailable as exc:
        skip_unless_required(f"no PostgreSQL server to test against: {exc}", PG_REQUIRE_ENV)
    except Exception:
        for log in sorted(log_dir.glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}")
        raise
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
