"""The model registry's rows: models, their versions and tasks, the enabled flag, and the fail-closed check.

Pure storage: it takes metadata already validated (a ``ModelConfig`` dumped
to JSON) and never talks to a daemon; ``ruth_ai_core.registry`` does the
importing from model.yaml or a daemon's describe op on top of it.

Importing records a version; the latest import is the model's current
version, so importing an older version again is a rollback. A model is
enabled when first imported unless told otherwise; re-importing keeps its
flag.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterable, Optional

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from . import schema as t
from .database import Database
from .errors import AssignmentRejected, InvalidDocument
from .sql import insert_for, storable_json

NOT_IN_REGISTRY = "is not in the registry"
DISABLED = "is disabled in the registry"


@dataclass(frozen=True)
class RegisteredModel:
    model_id: str
    enabled: bool
    current_version: str
    versions: list[str]
    """Every imported version, oldest import first."""
    metadata: dict[str, Any]
    """The current version's model.yaml, as validated."""
    source: str
    """Where the current version was imported from (``model.yaml:PATH``, ``describe:SOCKET``, ``api``)."""
    updated_at: float

    @property
    def name(self) -> str:
        return str(self.metadata.get("model_name", ""))

    @property
    def tasks(self) -> list[str]:
        return [str(task) for task in self.metadata.get("supported_tasks") or []]


class RegistryStore:
    """Registry reads and writes on one ``Database``; every write is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- writing ------------------------------------------------------------------------

    def add_version(self, model_id: str, version: str, metadata: dict[str, Any], source: str,
                    enabled: Optional[bool] = None) -> RegisteredModel:
        """Record ``version`` as the current one (new models start enabled unless ``enabled`` says otherwise)."""
        storable_json(metadata, f"model {model_id} {version} metadata")
        storable_json(source, f"model {model_id} {version} source")
        now = time.time()
        tasks = sorted({str(task) for task in metadata.get("supported_tasks") or []})
        if any(len(task) > t.ID_LENGTH for task in tasks):
            raise InvalidDocument(f"model {model_id} {version}: a task name is longer than {t.ID_LENGTH} characters")
        with self.db.write() as conn:
            flag = conn.execute(sa.select(t.models.c.enabled).where(t.models.c.model_id == model_id)).scalar()
            if flag is None:
                conn.execute(t.models.insert().values(model_id=model_id, enabled=True if enabled is None else enabled,
                                                      current_version=version, created_at=now, updated_at=now))
            else:
                conn.execute(t.models.update().where(t.models.c.model_id == model_id).values(
                    current_version=version, enabled=bool(flag) if enabled is None else enabled, updated_at=now))
            stmt = insert_for(self.db, t.model_versions).values(
                model_id=model_id, version=version, metadata=metadata, source=source, imported_at=now)
            conn.execute(stmt.on_conflict_do_update(
                index_elements=["model_id", "version"],
                set_={"metadata": stmt.excluded.metadata, "source": stmt.excluded.source,
                      "imported_at": stmt.excluded.imported_at}))
            conn.execute(t.model_version_tasks.delete().where(
                (t.model_version_tasks.c.model_id == model_id) & (t.model_version_tasks.c.version == version)))
            if tasks:
                conn.execute(t.model_version_tasks.insert(),
                             [{"model_id": model_id, "version": version, "task": task} for task in tasks])
            entry = self._get(conn, model_id)
        assert entry is not None
        return entry

    def set_enabled(self, model_id: str, enabled: bool) -> Optional[RegisteredModel]:
        """Flip the flag; None when the model is not registered."""
        with self.db.write() as conn:
            updated = conn.execute(t.models.update().where(t.models.c.model_id == model_id)
                                   .values(enabled=enabled, updated_at=time.time())).rowcount
            return self._get(conn, model_id) if updated else None

    # -- reading ------------------------------------------------------------------------

    def get(self, model_id: str) -> Optional[RegisteredModel]:
        with self.db.read() as conn:
            return self._get(conn, model_id)

    def list(self, enabled: Optional[bool] = None, task: Optional[str] = None) -> list[RegisteredModel]:
        """Every registered model by id, optionally only those enabled (or disabled) and declaring ``task``."""
        query = _current_query()
        if enabled is not None:
            query = query.where(t.models.c.enabled == enabled)
        if task is not None:
            tasks = t.model_version_tasks
            query = query.where(sa.exists().where(
                (tasks.c.model_id == t.models.c.model_id) & (tasks.c.version == t.models.c.current_version)
                & (tasks.c.task == task)))
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(t.models.c.model_id)).all()
            versions = _versions(conn, [row.model_id for row in rows])
        return [_entry(row, versions.get(row.model_id, [])) for row in rows]

    def flags(self, model_ids: Iterable[str], conn: Optional[Connection] = None) -> dict[str, bool]:
        """model_id -> enabled for those registered (one query, for checking many assignments at once)."""
        wanted = sorted(set(model_ids))
        if not wanted:
            return {}
        query = sa.select(t.models.c.model_id, t.models.c.enabled).where(t.models.c.model_id.in_(wanted))
        if conn is not None:
            return {row.model_id: bool(row.enabled) for row in conn.execute(query)}
        with self.db.read() as own:
            return {row.model_id: bool(row.enabled) for row in own.execute(query)}

    def rejection(self, model_id: str, flags: dict[str, bool]) -> Optional[str]:
        """Why an assignment to ``model_id`` is refused given ``flags`` (from ``flags``), or None if allowed."""
        if model_id not in flags:
            return (f"model {model_id!r} {NOT_IN_REGISTRY} {self.db.location.display()}; import it first: "
                    f"ruth-ai models import MODEL_YAML (or --from-daemon {model_id})")
        if not flags[model_id]:
            return f"model {model_id!r} {DISABLED}; enable it with: ruth-ai models enable {model_id}"
        return None

    def check_assignable(self, model_id: str, conn: Optional[Connection] = None) -> None:
        """Raise AssignmentRejected unless ``model_id`` is registered and enabled (fail closed)."""
        reason = self.rejection(model_id, self.flags([model_id], conn))
        if reason is not None:
            raise AssignmentRejected(reason)

    def _get(self, conn: Connection, model_id: str) -> Optional[RegisteredModel]:
        row = conn.execute(_current_query().where(t.models.c.model_id == model_id)).first()
        if row is None:
            return None
        return _entry(row, _versions(conn, [model_id]).get(model_id, []))


def _current_query() -> sa.Select:
    m, v = t.models, t.model_versions
    return (sa.select(m.c.model_id, m.c.enabled, m.c.current_version, m.c.updated_at, v.c.metadata, v.c.source)
            .join(v, (v.c.model_id == m.c.model_id) & (v.c.version == m.c.current_version)))


def _versions(conn: Connection, model_ids: list[str]) -> dict[str, list[str]]:
    if not model_ids:
        return {}
    v = t.model_versions
    rows = conn.execute(sa.select(v.c.model_id, v.c.version).where(v.c.model_id.in_(model_ids))
                        .order_by(v.c.model_id, v.c.imported_at, v.c.version))
    found: dict[str, list[str]] = {}
    for row in rows:
        found.setdefault(row.model_id, []).append(row.version)
    return found


def _entry(row: Any, versions: list[str]) -> RegisteredModel:
    return RegisteredModel(model_id=row.model_id, enabled=bool(row.enabled), current_version=row.current_version,
                           versions=versions, metadata=dict(row.metadata), source=row.source,
                           updated_at=float(row.updated_at))
