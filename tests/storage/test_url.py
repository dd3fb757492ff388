"""Database URLs: what users write, what we refuse, and where a command gets its database from."""

from pathlib import Path

import pytest

from ruth_ai_core.storage.url import DatabaseUrlError, parse_database_url, resolve_database, sqlite_url


def test_a_plain_postgresql_url_is_driven_by_psycopg_3_including_the_unix_socket_form():
    location = parse_database_url("postgresql://ruth@/ruth_ai?host=/run/postgresql")
    assert location.backend == "postgresql"
    assert location.url.drivername == "postgresql+psycopg"
    assert location.url.query["host"] == "/run/postgresql" and location.url.database == "ruth_ai"
    assert parse_database_url("postgres://ruth@db.example:6543/ruth_ai").url.port == 6543
    assert parse_database_url("postgresql+psycopg://ruth@db/ruth_ai").backend == "postgresql"


def test_passwords_never_appear_in_what_we_print():
    location = parse_database_url("postgresql://ruth:s3cret@db/ruth_ai")
    assert "s3cret" not in location.display() and "s3cret" not in str(location)
    with pytest.raises(DatabaseUrlError) as refused:
        parse_database_url("postgresql+psycopg2://ruth:s3cret@db/ruth_ai")
    assert "s3cret" not in str(refused.value) and "psycopg 3" in str(refused.value)


@pytest.mark.parametrize("url, message", [
    ("registry.sqlite3", "not a database URL"),
    ("postgresql:/ruth@db/ruth_ai", "not a database URL"),
    ("mysql://ruth@db/ruth_ai", "unsupported database 'mysql'"),
    ("postgresql+asyncpg://ruth@db/ruth_ai", "only the psycopg 3 driver"),
    ("postgresql://ruth@db", "name the database"),
    ("postgresql://ruth@db:notaport/ruth_ai", "not a valid database URL"),
    ("postgresql://ruth@db/ruth_ai?sslmode=require&evil=1", "unsupported query parameter(s): evil"),
    ("sqlite://", "must be a file"),
    ("sqlite:///:memory:", "must be a file"),
    ("sqlite://host/file.db", "names a file"),
])
def test_unusable_urls_are_refused_with_what_would_work(url, message):
    with pytest.raises(DatabaseUrlError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_database_url(url)


def test_sqlite_urls_and_paths(tmp_path):
    assert parse_database_url(f"sqlite:///{tmp_path}/a.db").sqlite_path == tmp_path / "a.db"
    assert parse_database_url("sqlite:///relative/a.db").sqlite_path == Path("relative/a.db")
    assert sqlite_url(tmp_path / "b.db").display() == str(tmp_path / "b.db")


def test_where_a_command_gets_its_database(tmp_path):
    env = {"RUTH_AI_DATABASE": "postgresql://ruth@/from_env?host=/run/postgresql",
           "RUTH_AI_REGISTRY": str(tmp_path / "env.sqlite3"), "XDG_DATA_HOME": str(tmp_path / "xdg")}
    assert resolve_database("sqlite:///flag.db", environ=env).sqlite_path == Path("flag.db")
    assert resolve_database(registry_path=tmp_path / "r.db", environ=env).sqlite_path == tmp_path / "r.db"
    assert resolve_database(environ=env).url.database == "from_env"
    del env["RUTH_AI_DATABASE"]
    assert resolve_database(environ=env).sqlite_path == tmp_path / "env.sqlite3"
    del env["RUTH_AI_REGISTRY"]
    assert resolve_database(environ=env).sqlite_path == tmp_path / "xdg" / "ruth-ai" / "registry.sqlite3"
    with pytest.raises(DatabaseUrlError, match="not both"):
        resolve_database("sqlite:///a.db", tmp_path / "b.db", environ=env)
    with pytest.raises(DatabaseUrlError, match="not a database URL"):
        resolve_database(environ={"RUTH_AI_DATABASE": "nonsense"})
