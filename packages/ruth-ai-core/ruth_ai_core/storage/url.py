"""Which database: the URL a user gives, checked and mapped to the SQLAlchemy dialect we support.

Two backends, one code path:

- SQLite, the embedded default: ``sqlite:///relative/path.sqlite3`` or
  ``sqlite:////absolute/path.sqlite3``, or ``--registry PATH`` (the shortcut
  the demo, the tests and bench use). A file, never ``:memory:``: Core, the
  CLI and the API are separate processes and must see the same data.
- PostgreSQL, the production backend: ``postgresql://user@host/db``,
  ``postgresql://user@/db?host=/run/postgresql`` (Unix socket) and the
  ``postgres://`` spelling, all driven by psycopg 3
  (``postgresql+psycopg://`` is accepted as written). Other drivers are
  refused rather than half-supported.

Where a command gets its database from, first match wins: ``--database``,
``--registry``, $RUTH_AI_DATABASE, $RUTH_AI_REGISTRY (a SQLite path, as
before), else ``$XDG_DATA_HOME/ruth-ai/registry.sqlite3``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional
from urllib.parse import unquote

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

DATABASE_ENV = "RUTH_AI_DATABASE"
REGISTRY_ENV = "RUTH_AI_REGISTRY"
"""The older variable: a SQLite file path."""

SQLITE = "sqlite"
POSTGRESQL = "postgresql"
_POSTGRES_SCHEMES = {"postgresql", "postgres", "postgresql+psycopg"}


class DatabaseUrlError(ValueError):
    """A database URL we cannot use; the message says what would work."""


@dataclass(frozen=True)
class DatabaseUrl:
    """A checked database location: the backend and the SQLAlchemy URL that reaches it."""

    backend: str
    """``sqlite`` or ``postgresql``."""
    url: URL
    """What ``create_engine`` gets (``sqlite:///...`` or ``postgresql+psycopg://...``)."""

    @property
    def sqlite_path(self) -> Optional[Path]:
        return Path(self.url.database) if self.backend == SQLITE and self.url.database else None

    def display(self) -> str:
        """The SQLite file, or the URL with any password masked: safe for logs and error messages."""
        if self.backend == SQLITE:
            return str(self.url.database)
        return unquote(self.url.set(drivername="postgresql").render_as_string(hide_password=True))

    def __str__(self) -> str:
        return self.display()


def sqlite_url(path: Path | str) -> DatabaseUrl:
    """A SQLite file (created on first use)."""
    text = str(path)
    if not text or text == ":memory:":
        raise DatabaseUrlError("a SQLite database must be a file: Core, the CLI and the API share it")
    return DatabaseUrl(SQLITE, URL.create("sqlite", database=str(Path(text).expanduser())))


def parse_database_url(value: str) -> DatabaseUrl:
    """Check a user-supplied URL and map it to the dialect we drive; DatabaseUrlError if unusable."""
    text = value.strip()
    if "://" not in text:
        raise DatabaseUrlError(
            f"{value!r} is not a database URL; use sqlite:///PATH, postgresql://USER@HOST/DB or "
            "postgresql://USER@/DB?host=/run/postgresql (or --registry PATH for a SQLite file)"
        )
    try:
        url = make_url(text)
    except (ArgumentError, ValueError) as exc:
        raise DatabaseUrlError(f"{_mask(text)}: not a valid database URL ({exc})") from None
    scheme = url.drivername
    if scheme == "sqlite" or scheme == "sqlite+pysqlite":
        if url.host or url.username or url.port:
            raise DatabaseUrlError(f"{_mask(text)}: a SQLite URL names a file (sqlite:///PATH), not a host")
        return sqlite_url(url.database or "")
    if scheme in _POSTGRES_SCHEMES:
        if not url.database:
            raise DatabaseUrlError(f"{_mask(text)}: name the database, e.g. postgresql://USER@HOST/ruth_ai")
        extra = set(url.query) - {"host", "port", "sslmode", "application_name", "connect_timeout", "options",
                                   "sslrootcert", "sslcert", "sslkey", "target_session_attrs"}
        if extra:
            raise DatabaseUrlError(f"{_mask(text)}: unsupported query parameter(s): {', '.join(sorted(extra))}")
        return DatabaseUrl(POSTGRESQL, url.set(drivername="postgresql+psycopg"))
    if scheme.startswith("postgresql+") or scheme.startswith("postgres+"):
        raise DatabaseUrlError(f"{_mask(text)}: only the psycopg 3 driver is supported; write postgresql://...")
    raise DatabaseUrlError(f"{_mask(text)}: unsupported database {scheme!r}; use sqlite:///PATH or postgresql://...")


def default_sqlite_path(environ: Mapping[str, str] = os.environ) -> Path:
    """$RUTH_AI_REGISTRY, else $XDG_DATA_HOME/ruth-ai/registry.sqlite3 (~/.local/share by default)."""
    if environ.get(REGISTRY_ENV):
        return Path(environ[REGISTRY_ENV])
    data_home = Path(environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data_home / "ruth-ai" / "registry.sqlite3"


def resolve_database(database: Optional[str] = None, registry_path: Optional[Path] = None,
                     environ: Mapping[str, str] = os.environ) -> DatabaseUrl:
    """The database a command uses: --database, --registry, $RUTH_AI_DATABASE, $RUTH_AI_REGISTRY, the default file."""
    if database is not None and registry_path is not None:
        raise DatabaseUrlError("give --database URL or --registry PATH, not both")
    if database is not None:
        return parse_database_url(database)
    if registry_path is not None:
        return sqlite_url(registry_path)
    if environ.get(DATABASE_ENV):
        return parse_database_url(environ[DATABASE_ENV])
    return sqlite_url(default_sqlite_path(environ))


def _mask(text: str) -> str:
    """The URL text with a password (``user:secret@``) masked, even when the URL does not parse."""
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    credentials, at, host = rest.rpartition("@")
    if at and ":" in credentials:
        credentials = credentials.split(":", 1)[0] + ":***"
    return f"{scheme}{sep}{credentials}{at}{host}"
