"""Schema migrations: fresh databases, the pre-migration SQLite registry, refusals, and code/migration agreement."""

import sqlite3
import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ruth_ai_core.storage import schema
from ruth_ai_core.storage.database import Database
from ruth_ai_core.storage.errors import DatabaseUnavailable, SchemaError
from ruth_ai_core.storage.migrate import VERSION_TABLE, alembic_config, current_revision, head_revision, run_upgrade
from ruth_ai_core.storage.registry_store import RegistryStore
from ruth_ai_core.storage.sql import revision
from ruth_ai_core.storage.url import parse_database_url

# The schema of the SQLite-only registry this replaces (ruth_ai_core/registry.py before migrations), verbatim.
V1_SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    model_id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL,
    current_version TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS model_versions (
    model_id TEXT NOT NULL REFERENCES models(model_id) ON DELETE CASCADE,
    version TEXT NOT NULL,
    metadata TEXT NOT NULL,
    source TEXT NOT NULL,
    imported_at REAL NOT NULL,
    PRIMARY KEY (model_id, version)
);
"""


def v1_registry(path):
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.execute("PRAGMA user_version = 1")
    db.execute("INSERT INTO models VALUES ('det', 0, '1.1.0', 100.0, 200.0)")
    for version, at in (("1.0.0", 100.0), ("1.1.0", 200.0)):
        db.execute("INSERT INTO model_versions VALUES ('det', ?, ?, 'model.yaml:/x/model.yaml', ?)",
                   (version, f'{{"model_id": "det", "model_version": "{version}", "model_name": "Det", '
                             f'"supported_tasks": ["detection", "tracking"]}}', at))
    db.commit()
    db.close()


def test_a_fresh_sqlite_file_is_created_at_head_and_marked_for_older_code(tmp_path):
    path = tmp_path / "new.sqlite3"
    with Database.open(path) as db:
        assert current_revision(db) == head_revision()
        assert revision(db) == 1
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2  # the pre-migration code refuses 2
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_v1_registry_file_is_migrated_keeping_models_versions_and_flags(tmp_path):
    path = tmp_path / "old.sqlite3"
    v1_registry(path)
    with Database.open(path) as db:
        assert current_revision(db) == head_revision()
        entry = RegistryStore(db).get("det")
        assert entry.enabled is False and entry.current_version == "1.1.0" and entry.versions == ["1.0.0", "1.1.0"]
        assert entry.updated_at == 200.0 and entry.source == "model.yaml:/x/model.yaml"
        # Tasks were filled from the stored metadata, so the task filter works on old entries.
        assert [m.model_id for m in RegistryStore(db).list(task="tracking")] == ["det"]
        before = revision(db)
        RegistryStore(db).set_enabled("det", True)
        assert revision(db) > before


@pytest.mark.parametrize("damage, message", [
    ("ALTER TABLE models ADD COLUMN extra TEXT", "table models has columns"),
    ("CREATE TABLE other (x)", "its tables are"),
])
def test_a_v1_file_that_is_not_quite_v1_is_refused_and_left_alone(tmp_path, damage, message):
    path = tmp_path / "odd.sqlite3"
    v1_registry(path)
    with sqlite3.connect(path) as raw:
        raw.execute(damage)
    with pytest.raises(SchemaError, match=message):
        Database.open(path)
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "ruth_ai_alembic_version" not in {r[0] for r in raw.execute("SELECT name FROM sqlite_master")}


def test_a_newer_or_foreign_sqlite_file_is_refused(tmp_path):
    future = tmp_path / "future.sqlite3"
    sqlite3.connect(future).execute("PRAGMA user_version = 99").connection.close()
    with pytest.raises(SchemaError, match="version 99 is newer"):
        Database.open(future)
    foreign = tmp_path / "foreign.sqlite3"
    with sqlite3.connect(foreign) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
    with pytest.raises(SchemaError, match="not a Ruth AI registry.*invoices"):
        Database.open(foreign)


def test_a_revision_this_code_does_not_know_is_refused(database_url):
    with Database.open(database_url) as db, db.write() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    with pytest.raises(SchemaError, match="revision 9999 is unknown to this Ruth AI Core"):
        Database.open(database_url)


def test_postgresql_is_upgraded_only_on_request(empty_postgres_url):
    with pytest.raises(SchemaError, match="has no Ruth AI schema yet; run: ruth-ai db upgrade"):
        Database.open(empty_postgres_url)
    db = Database(parse_database_url(empty_postgres_url))
    try:
        # Two hosts upgrading at once: the advisory lock makes the second one find the work done.
        results = []
        threads = [threading.Thread(target=lambda: results.append(run_upgrade(db))) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(((r.before or "") , r.after) for r in results) == [("", head_revision()), (head_revision(), head_revision())]
    finally:
        db.close()
    Database.open(empty_postgres_url).close()


def test_postgresql_shares_a_database_with_other_tables_but_not_with_ours(empty_postgres_url, pg_cluster):
    import psycopg

    name = parse_database_url(empty_postgres_url).url.database
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        conn.execute("CREATE TABLE backend_users (id int)")
        conn.execute("CREATE TABLE alembic_version (version_num varchar(32))")  # another app's Alembic history
        conn.execute("INSERT INTO alembic_version VALUES ('abc123')")
    with Database(parse_database_url(empty_postgres_url)) as db:
        assert run_upgrade(db).after == head_revision()
    with psycopg.connect(pg_cluster.conninfo(name), autocommit=True) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchone() == ("abc123",)
        conn.execute(f"DROP TABLE {VERSION_TABLE}")
    with Database(parse_database_url(empty_postgres_url)) as db, pytest.raises(SchemaError, match="give Ruth AI a database of its own"):
        run_upgrade(db)


def test_the_code_schema_matches_what_the_migrations_build(database):
    with database.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        diff = compare_metadata(context, schema.metadata)
    assert diff == []


def test_downgrade_to_nothing_and_back(database_url):
    from alembic import command

    with Database.open(database_url) as db:
        with db.write() as conn:
            command.downgrade(alembic_config(conn), "base")
        with db.read() as conn:
            assert set(sa.inspect(conn).get_table_names()) <= {VERSION_TABLE}
        assert run_upgrade(db).after == head_revision()
        assert revision(db) == 1


def test_a_server_that_is_not_there_is_unavailable_not_a_crash(tmp_path):
    with pytest.raises(DatabaseUnavailable, match="ruth_ai"):
        Database.open(f"postgresql://postgres@/ruth_ai?host={tmp_path}&port=1")
