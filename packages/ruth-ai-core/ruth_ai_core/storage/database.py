"""One SQLAlchemy engine per database URL, set up so both backends behave the same to the code above.

SQLite gets WAL (readers never wait for the writer: the reconciler and the
API read while the event sink writes), foreign keys on, a 10 s busy timeout,
and real transactions: pysqlite's own transaction handling is switched off
and we emit ``BEGIN`` ourselves, ``BEGIN IMMEDIATE`` for writes, so a write
takes the lock when it starts instead of failing half-way when another
process writes too. PostgreSQL gets psycopg 3, a small pool with
``pool_pre_ping`` (connections broken by a server restart are replaced, not
handed out) and a connect timeout.

``Database.open`` also checks the schema: a SQLite file is upgraded on the
spot (the demo and the README commands need no extra step); a PostgreSQL
database must already be at the current revision (``ruth-ai db upgrade``),
because many hosts share it and upgrading it is an operator's decision.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any, Iterator, Optional

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, OperationalError

from .errors import DatabaseUnavailable
from .url import POSTGRESQL, SQLITE, DatabaseUrl, parse_database_url, sqlite_url

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 5
SQLITE_BUSY_TIMEOUT_S = 10.0
_WRITE = "ruth_ai_write"


class Database:
    """An engine plus the backend it talks to; thread-safe (the pool hands each thread its own connection)."""

    def __init__(self, location: DatabaseUrl, pool_size: int = 5,
                 connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S) -> None:
        self.location = location
        self.backend = location.backend
        self.engine: Engine = _create_engine(location, pool_size, connect_timeout_s)

    @classmethod
    def open(cls, location: DatabaseUrl | str | Path, upgrade: Optional[bool] = None, **kwargs: Any) -> "Database":
        """Connect and check the schema; ``upgrade`` defaults to True for SQLite, False for PostgreSQL.

        Raises DatabaseUnavailable when it does not answer and SchemaError when
        its schema is not this code's (with what to run)."""
        from .migrate import ensure_current  # migrate imports this module

        if not isinstance(location, DatabaseUrl):
            text = str(location)
            location = parse_database_url(text) if "://" in text else sqlite_url(text)
        if location.backend == SQLITE:
            assert location.sqlite_path is not None
            location.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        db = cls(location, **kwargs)
        try:
            ensure_current(db, upgrade=location.backend == SQLITE if upgrade is None else upgrade)
        except BaseException:
            db.close()
            raise
        return db

    @property
    def is_postgresql(self) -> bool:
        return self.backend == POSTGRESQL

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection in a transaction that only reads (a consistent snapshot on both backends)."""
        with translate_errors(self), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A connection in a write transaction, committed on success, rolled back on any exception."""
        with translate_errors(self), self.engine.connect() as conn:
            conn.execution_options(**{_WRITE: True})
            with conn.begin():
                yield conn

    def ping(self) -> None:
        """Raise DatabaseUnavailable unless the database answers a query now."""
        with self.read() as conn:
            conn.execute(sa.text("SELECT 1"))

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> "Database":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Database({self.location.display()})"


@contextlib.contextmanager
def translate_errors(db: Database) -> Iterator[None]:
    """Turn "the server is not there" into DatabaseUnavailable; everything else passes through."""
    try:
        yield
    except OperationalError as exc:
        if is_disconnect(db, exc):
            raise DatabaseUnavailable(f"{db.location.display()} does not answer: {_first_line(exc.orig)}") from exc
        raise
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise DatabaseUnavailable(f"{db.location.display()} does not answer: {_first_line(exc.orig)}") from exc
        raise


_SQLITE_TRANSIENT = ("unable to open database", "disk i/o error", "database is locked", "database is busy")


def is_disconnect(db: Database, exc: DBAPIError) -> bool:
    """True when retrying later may succeed (server gone, SQLite file locked past the busy timeout)."""
    if exc.connection_invalidated:
        return True
    if db.backend == POSTGRESQL:
        return True  # psycopg's OperationalError: connection trouble, cancelled or rolled-back transactions
    message = str(exc.orig).lower()
    return any(text in message for text in _SQLITE_TRANSIENT)


def _first_line(error: object) -> str:
    return (str(error).strip().splitlines() or ["unknown error"])[0]


def _create_engine(location: DatabaseUrl, pool_size: int, connect_timeout_s: int) -> Engine:
    if location.backend == SQLITE:
        engine = sa.create_engine(
            location.url, connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_S},
            pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False,
        )
        _sqlite_behave(engine)
        return engine
    connect_args: dict[str, Any] = {"application_name": "ruth-ai"}
    if "connect_timeout" not in location.url.query:
        connect_args["connect_timeout"] = connect_timeout_s
    return sa.create_engine(location.url, connect_args=connect_args, pool_size=pool_size, max_overflow=pool_size,
                            pool_pre_ping=True, pool_recycle=3600)


def _sqlite_behave(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves, below
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")  # durable with WAL up to the last checkpointed commit
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_WRITE) else "BEGIN")
