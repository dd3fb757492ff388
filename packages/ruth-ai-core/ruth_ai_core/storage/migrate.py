"""Schema versions: Alembic migrations shipped in the package, applied programmatically.

``upgrade`` runs every pending migration in one transaction (all or nothing,
on both backends; PostgreSQL also takes an advisory lock so two hosts running
``ruth-ai db upgrade`` at once do it one after the other). ``ensure_current``
is what opening a database does: upgrade a SQLite file, or check that a
PostgreSQL database is at head and say what to run when it is not.

A SQLite registry written before this module existed (no ``alembic_version``
table, ``PRAGMA user_version = 1``, tables ``models`` and ``model_versions``)
is recognised, stamped at revision 0001 (its schema) and upgraded from there,
keeping its data. Anything else that is not ours is refused rather than
written into. After an upgrade a SQLite file carries ``user_version = 2``, so
an older Ruth AI Core refuses it ("newer than this Ruth AI Core") instead of
writing to tables it does not know.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import sqlalchemy as sa

if logging.getLogger("alembic").level == logging.NOTSET:
    # Alembic logs its plugins and "Context impl SQLiteImpl" at INFO on every open (from its imports on);
    # our own log line says what changed.
    logging.getLogger("alembic").setLevel(logging.WARNING)

from alembic import command  # noqa: E402
from alembic.config import Config  # noqa: E402
from alembic.runtime.migration import MigrationContext  # noqa: E402
from alembic.script import ScriptDirectory  # noqa: E402
from sqlalchemy.engine import Connection  # noqa: E402

from .database import Database  # noqa: E402
from .errors import SchemaError  # noqa: E402
from .url import SQLITE  # noqa: E402

logger = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
LEGACY_REVISION = "0001"
LEGACY_USER_VERSION = 1
MANAGED_USER_VERSION = 2
"""PRAGMA user_version of a SQLite file under Alembic; the pre-Alembic code refuses anything but 0 and 1."""
_LEGACY_COLUMNS = {
    "models": {"model_id", "enabled", "current_version", "created_at", "updated_at"},
    "model_versions": {"model_id", "version", "metadata", "source", "imported_at"},
}
VERSION_TABLE = "ruth_ai_alembic_version"
"""Not Alembic's default name: a database shared with another Alembic-managed application keeps both histories."""
OUR_TABLES = {"models", "model_versions", "model_version_tasks", "cameras", "assignments", "change_revision", "events"}
_UPGRADE_LOCK = 0x52555448  # "RUTH": pg_advisory_xact_lock key for upgrades


@dataclass(frozen=True)
class UpgradeResult:
    before: Optional[str]
    after: str
    migrated_legacy: bool = False

    @property
    def changed(self) -> bool:
        return self.before != self.after


def alembic_config(connection: Optional[Connection] = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["version_table"] = VERSION_TABLE
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@functools.lru_cache(maxsize=1)
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


@functools.lru_cache(maxsize=1)
def known_revisions() -> frozenset[str]:
    return frozenset({script.revision for script in ScriptDirectory.from_config(alembic_config()).walk_revisions()})


def current_revision(db: Database) -> Optional[str]:
    """The database's revision, None when it has none (empty, or a pre-Alembic SQLite registry)."""
    with db.read() as conn:
        return _current(conn)


def _current(conn: Connection) -> Optional[str]:
    return MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE}).get_current_revision()


def ensure_current(db: Database, upgrade: bool) -> None:
    """Make sure the schema is this code's: upgrade it when allowed, else raise SchemaError saying what to do."""
    with db.read() as conn:
        current = _current(conn)
        if current is None:
            _check_unmanaged(db, conn)
    head = head_revision()
    if current == head:
        return
    if current is not None and current not in known_revisions():
        raise SchemaError(
            f"{db.location.display()}: schema revision {current} is unknown to this Ruth AI Core (it knows up to "
            f"{head}); the database was upgraded by a newer version: use that version"
        )
    if not upgrade:
        state = "has no Ruth AI schema yet" if current is None else f"is at schema revision {current}, not {head}"
        raise SchemaError(f"{db.location.display()} {state}; run: ruth-ai db upgrade --database URL")
    run_upgrade(db)


def run_upgrade(db: Database) -> UpgradeResult:
    """Apply every pending migration in one transaction; returns the revisions before and after."""
    head = head_revision()
    with db.write() as conn:
        if db.is_postgresql:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _UPGRADE_LOCK})
        before = _current(conn)
        legacy = False
        if before is None:
            legacy = _check_unmanaged(db, conn)
        elif before not in known_revisions():
            raise SchemaError(f"{db.location.display()}: schema revision {before} is newer than this Ruth AI Core ({head})")
        if before == head:
            return UpgradeResult(before, head)
        config = alembic_config(conn)
        if legacy:
            command.stamp(config, LEGACY_REVISION)
            logger.info("%s: registry from before schema migrations; keeping its data", db.location.display())
        command.upgrade(config, "head")
        if db.backend == SQLITE:
            conn.exec_driver_sql(f"PRAGMA user_version = {MANAGED_USER_VERSION}")
        after = _current(conn)
    assert after == head, (after, head)
    logger.info("%s: schema %s -> %s", db.location.display(), before or "(none)", after)
    return UpgradeResult(before, after, legacy)


def _check_unmanaged(db: Database, conn: Connection) -> bool:
    """For a database without our version table: True for a v1 SQLite registry (to migrate), False when we may
    create our tables; SchemaError when it holds something we must not write into."""
    inspector = sa.inspect(conn)
    tables = set(inspector.get_table_names()) - {VERSION_TABLE}  # an empty version table: downgraded to nothing
    where = db.location.display()
    if db.backend == SQLITE:
        user_version = conn.exec_driver_sql("PRAGMA user_version").scalar()
        if user_version == MANAGED_USER_VERSION and not tables:
            return False
        if user_version not in (0, LEGACY_USER_VERSION):
            raise SchemaError(f"{where}: registry schema version {user_version} is newer than this Ruth AI Core")
        if user_version == LEGACY_USER_VERSION:
            if tables != set(_LEGACY_COLUMNS):
                raise SchemaError(f"{where}: marked as a v1 registry (user_version 1) but its tables are "
                                  f"{sorted(tables)}, not {sorted(_LEGACY_COLUMNS)}; not touching it")
            for table, columns in _LEGACY_COLUMNS.items():
                found = {column["name"] for column in inspector.get_columns(table)}
                if found != columns:
                    raise SchemaError(f"{where}: table {table} has columns {sorted(found)}, not the v1 registry's "
                                      f"{sorted(columns)}; not touching it")
            return True
        # Opening a SQLite file upgrades it implicitly: never add our tables to somebody else's file.
        if tables:
            raise SchemaError(f"{where}: a SQLite file with tables that are not a Ruth AI registry "
                              f"({', '.join(sorted(tables))}); not touching it")
        return False
    # PostgreSQL: upgraded only on request (ruth-ai db upgrade); other applications' tables may share the database,
    # ours must not be there already under another owner.
    clash = tables & OUR_TABLES
    if clash:
        raise SchemaError(f"{where}: already has tables named like Ruth AI's ({', '.join(sorted(clash))}) but no "
                          f"{VERSION_TABLE}; not touching them: give Ruth AI a database of its own")
    return False
