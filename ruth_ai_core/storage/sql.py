"""The few statements that differ between the backends, behind one name each.

SQLAlchemy builds every query from ``schema``; only ``INSERT ... ON CONFLICT``
needs the dialect's own ``insert`` construct. Both dialects spell it the same
(``on_conflict_do_nothing`` / ``on_conflict_do_update``), so callers write it
once.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from .database import Database


def insert_for(db: Database, table: sa.Table) -> Any:
    """An INSERT with ON CONFLICT support for ``db``'s backend."""
    return postgresql.insert(table) if db.is_postgresql else sqlite.insert(table)


def revision(db: Database) -> int:
    """The change revision: bumped (by triggers) whenever models, versions, cameras or assignments change."""
    from .schema import change_revision

    with db.read() as conn:
        return int(conn.execute(sa.select(change_revision.c.value).where(change_revision.c.id == 1)).scalar_one())
