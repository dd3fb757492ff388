"""The few statements that differ between the backends, behind one name each.

SQLAlchemy builds every query from ``schema``; only ``INSERT ... ON CONFLICT``
needs the dialect's own ``insert`` construct. Both dialects spell it the same
(``on_conflict_do_nothing`` / ``on_conflict_do_update``), so callers write it
once.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import Database
from .errors import InvalidDocument


def insert_for(db: Database, table: sa.Table) -> Any:
    """An INSERT with ON CONFLICT support for ``db``'s backend."""
    return postgresql.insert(table) if db.is_postgresql else sqlite.insert(table)


def revision(db: Database) -> int:
    """The change revision: bumped (by triggers) whenever models, versions, cameras or assignments change."""
    from .schema import change_revision

    with db.read() as conn:
        return int(conn.execute(sa.select(change_revision.c.value).where(change_revision.c.id == 1)).scalar_one())


def storable_json(value: Any, what: str) -> Any:
    """``value`` if both backends can store it as JSON; InvalidDocument naming ``what`` otherwise.

    Checked before writing so SQLite and PostgreSQL accept and refuse the same documents: no NaN or
    infinity, no NUL characters, no unpaired surrogates (PostgreSQL's JSONB refuses all three)."""
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=False).encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidDocument(f"{what}: a string holds an unpaired surrogate (not valid Unicode)") from None
    except (TypeError, ValueError) as exc:
        raise InvalidDocument(f"{what}: not storable as JSON ({exc})") from None
    if _has_nul(value):
        raise InvalidDocument(f"{what}: a string holds a NUL character")
    return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(item) for item in value)
    return False
