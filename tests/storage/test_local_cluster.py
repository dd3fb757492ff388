"""The throwaway PostgreSQL server the suite and bench/ use: found, started, stopped, measured; skipped without
binaries unless CI requires it (RUTH_REQUIRE_POSTGRES=1)."""

import psycopg
import pytest
from testkit import PG_REQUIRE_ENV, new_local_cluster

from ruth_ai_core.storage.local_cluster import PG_BIN_ENV, ClusterUnavailable, LocalCluster


@pytest.fixture
def no_binaries(monkeypatch, tmp_path):
    monkeypatch.setenv(PG_BIN_ENV, str(tmp_path))  # named explicitly: nothing else is searched


def test_without_binaries_it_says_what_to_install(no_binaries):
    with pytest.raises(ClusterUnavailable, match="apt-get install postgresql-15"):
        LocalCluster()


def test_without_binaries_the_suite_skips_unless_required(no_binaries, monkeypatch):
    monkeypatch.delenv(PG_REQUIRE_ENV, raising=False)
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server"):
        new_local_cluster()
    monkeypatch.setenv(PG_REQUIRE_ENV, "1")
    with pytest.raises(pytest.fail.Exception, match=f"no PostgreSQL server.*{PG_REQUIRE_ENV}"):
        new_local_cluster()
    monkeypatch.setenv(PG_REQUIRE_ENV, "0")
    with pytest.raises(pytest.skip.Exception):
        new_local_cluster()


def test_a_tcp_cluster_stops_starts_and_reports_its_cpu():
    cluster = new_local_cluster(tcp=True)
    try:
        cluster.init().start()
        url = cluster.create_database()
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        with psycopg.connect(cluster.conninfo()) as conn:
            conn.execute("SELECT count(*) FROM generate_series(1, 200000)").fetchone()
        assert cluster.cpu_seconds() > 0
        cluster.stop()
        assert not cluster.running
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(cluster.conninfo(), connect_timeout=2)
        cluster.start()
        with psycopg.connect(cluster.conninfo()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.destroy()
    assert not cluster.root.exists()
