"""Assignments in the database: which node runs each camera, and camera -> model at an FPS with its config.

Every write checks the models it names against the registry in the same
transaction (fail closed: an unknown or disabled model is refused, and a bulk
import with one bad entry changes nothing). A camera lives on one node, the
host whose shared memory holds its ring; all its assignments run there, so the
node is a property of the camera, set when its first assignment is made and
changed only by an explicit move.

Writes leave rows that did not change untouched, so re-importing the same
file does not bump the change revision and wakes no node.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Hashable, Optional

import sqlalchemy as sa
from pydantic import ValidationError
from sqlalchemy.engine import Connection

from ..assignments import Assignment, AssignmentError, SubscriptionKey
from . import schema as t
from .database import Database
from .errors import AssignmentConflict, AssignmentRejected
from .registry_store import RegistryStore
from .sql import revision, storable_json

NODE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
"""Node names: host-name-like (letters, digits, ``_ . -``), at most 64 characters."""
_NODE = re.compile(NODE_PATTERN)


@dataclass(frozen=True)
class PlacedAssignment:
    """An assignment and the node that runs its camera."""

    assignment: Assignment
    node: str
    updated_at: float


@dataclass(frozen=True)
class NodeSummary:
    node: str
    cameras: int
    assignments: int


@dataclass(frozen=True)
class WriteResult:
    added: list[SubscriptionKey] = field(default_factory=list)
    changed: list[SubscriptionKey] = field(default_factory=list)
    removed: list[SubscriptionKey] = field(default_factory=list)
    unchanged: list[SubscriptionKey] = field(default_factory=list)


def check_node(node: str) -> str:
    if not isinstance(node, str) or not _NODE.match(node):
        raise AssignmentConflict(f"node {node!r}: use letters, digits, '_', '.', '-' (at most 64, starting with a "
                                 "letter or digit)")
    return node


class AssignmentStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.registry = RegistryStore(db)

    # -- writing ------------------------------------------------------------------------

    def put(self, assignment: Assignment, node: Optional[str] = None) -> PlacedAssignment:
        """Add or change one assignment; ``node`` is required for a camera not seen before."""
        with self.db.write() as conn:
            self._check_models(conn, [assignment])
            placed = self._place_camera(conn, assignment.camera, node)
            self._upsert(conn, assignment, self._existing(conn, [assignment.key]).get(assignment.key))
        return PlacedAssignment(assignment, placed, time.time())

    def remove(self, camera_id: str, model_id: str) -> bool:
        """Delete one assignment; False when there was none. The camera stays on its node."""
        with self.db.write() as conn:
            return bool(conn.execute(t.assignments.delete().where(
                (t.assignments.c.camera_id == camera_id) & (t.assignments.c.model_id == model_id))).rowcount)

    def import_for_node(self, node: str, wanted: list[Assignment], replace: bool = False) -> WriteResult:
        """Write ``wanted`` (an assignments file) for ``node``, all or nothing.

        Cameras new to the database are placed on ``node``; a camera already on
        another node is a conflict. With ``replace`` the node's assignments not
        in ``wanted`` are removed, so the node ends up running exactly the file."""
        check_node(node)
        keys = [a.key for a in wanted]
        if len(set(keys)) != len(keys):
            twice = sorted({key for key in keys if keys.count(key) > 1})
            raise AssignmentConflict(f"assigned twice: {', '.join(f'{c} -> {m}' for c, m in twice)}")
        result = WriteResult()
        with self.db.write() as conn:
            self._check_models(conn, wanted)
            homes = self._homes(conn, {a.camera for a in wanted})
            elsewhere = sorted(f"{camera} (on {home})" for camera, home in homes.items() if home != node)
            if elsewhere:
                raise AssignmentConflict(f"cameras already on another node: {', '.join(elsewhere)}; move them first: "
                                         f"ruth-ai cameras move CAMERA --node {node}")
            for camera in sorted({a.camera for a in wanted} - set(homes)):
                self._insert_camera(conn, camera, node)
            existing = self._existing(conn, [a.key for a in wanted])
            for assignment in wanted:
                before = existing.get(assignment.key)
                if before == assignment:
                    result.unchanged.append(assignment.key)
                    continue
                self._upsert(conn, assignment, before)
                (result.changed if before is not None else result.added).append(assignment.key)
            if replace:
                keep = {a.key for a in wanted}
                for key in sorted(set(self._for_node(conn, node)) - keep):
                    conn.execute(t.assignments.delete().where(
                        (t.assignments.c.camera_id == key[0]) & (t.assignments.c.model_id == key[1])))
                    result.removed.append(key)
        return result

    def move_camera(self, camera_id: str, node: str) -> str:
        """Put ``camera_id`` (and so all its assignments) on ``node``; returns the node it was on."""
        check_node(node)
        with self.db.write() as conn:
            before = self._homes(conn, {camera_id}).get(camera_id)
            if before is None:
                raise AssignmentConflict(f"camera {camera_id!r} has no assignments; assign it with --node {node}")
            if before != node:
                conn.execute(t.cameras.update().where(t.cameras.c.camera_id == camera_id)
                             .values(node=node, updated_at=time.time()))
        return before

    # -- reading ------------------------------------------------------------------------

    def for_node(self, node: str) -> list[Assignment]:
        """What ``ruth-ai run --node`` runs: every assignment of the cameras on ``node``."""
        with self.db.read() as conn:
            return list(self._for_node(conn, node).values())

    def list(self, node: Optional[str] = None, camera_id: Optional[str] = None) -> list[PlacedAssignment]:
        a, c = t.assignments, t.cameras
        query = sa.select(a, c.c.node).join(c, c.c.camera_id == a.c.camera_id)
        if node is not None:
            query = query.where(c.c.node == node)
        if camera_id is not None:
            query = query.where(a.c.camera_id == camera_id)
        with self.db.read() as conn:
            rows = conn.execute(query.order_by(a.c.camera_id, a.c.model_id)).all()
        return [PlacedAssignment(_assignment(row), row.node, float(row.updated_at)) for row in rows]

    def camera_node(self, camera_id: str) -> Optional[str]:
        with self.db.read() as conn:
            return self._homes(conn, {camera_id}).get(camera_id)

    def nodes(self) -> list[NodeSummary]:
        c, a = t.cameras, t.assignments
        query = (sa.select(c.c.node, sa.func.count(sa.distinct(c.c.camera_id)).label("cameras"),
                           sa.func.count(a.c.model_id).label("assignments"))
                 .select_from(c.outerjoin(a, a.c.camera_id == c.c.camera_id))
                 .group_by(c.c.node).order_by(c.c.node))
        with self.db.read() as conn:
            return [NodeSummary(row.node, int(row.cameras), int(row.assignments)) for row in conn.execute(query)]

    # -- helpers (inside the caller's transaction) ----------------------------------------

    def _check_models(self, conn: Connection, wanted: list[Assignment]) -> None:
        flags = self.registry.flags((a.model for a in wanted), conn)
        reasons = sorted({f"{a.camera} -> {a.model}: {reason}" for a in wanted
                          if (reason := self.registry.rejection(a.model, flags)) is not None})
        if reasons:
            raise AssignmentRejected("; ".join(reasons))

    def _place_camera(self, conn: Connection, camera_id: str, node: Optional[str]) -> str:
        home = self._homes(conn, {camera_id}).get(camera_id)
        if home is None:
            if node is None:
                raise AssignmentConflict(f"camera {camera_id!r} is new: say which node runs it (--node NODE)")
            self._insert_camera(conn, camera_id, check_node(node))
            return node
        if node is not None and node != home:
            raise AssignmentConflict(f"camera {camera_id!r} runs on node {home!r}, not {node!r}; to move it: "
                                     f"ruth-ai cameras move {camera_id} --node {node}")
        return home

    def _insert_camera(self, conn: Connection, camera_id: str, node: str) -> None:
        now = time.time()
        conn.execute(t.cameras.insert().values(camera_id=camera_id, node=node, created_at=now, updated_at=now))

    def _homes(self, conn: Connection, camera_ids: set[str]) -> dict[str, str]:
        if not camera_ids:
            return {}
        rows = conn.execute(sa.select(t.cameras.c.camera_id, t.cameras.c.node)
                            .where(t.cameras.c.camera_id.in_(sorted(camera_ids))))
        return {row.camera_id: row.node for row in rows}

    def _existing(self, conn: Connection, keys: list[SubscriptionKey]) -> dict[SubscriptionKey, Assignment]:
        cameras = sorted({camera for camera, _ in keys})
        if not cameras:
            return {}
        rows = conn.execute(sa.select(t.assignments).where(t.assignments.c.camera_id.in_(cameras)))
        wanted = set(keys)
        found = {(row.camera_id, row.model_id): _assignment(row) for row in rows}
        return {key: value for key, value in found.items() if key in wanted}

    def _upsert(self, conn: Connection, assignment: Assignment, before: Optional[Assignment]) -> None:
        storable_json(assignment.config, f"assignment {assignment.camera} -> {assignment.model} config")
        now = time.time()
        values: dict[str, Any] = {"fps": assignment.fps, "max_in_flight": assignment.max_in_flight,
                                  "config": dict(assignment.config), "updated_at": now}
        if before is None:
            conn.execute(t.assignments.insert().values(camera_id=assignment.camera, model_id=assignment.model,
                                                       created_at=now, **values))
        elif before != assignment:
            conn.execute(t.assignments.update().where(
                (t.assignments.c.camera_id == assignment.camera) & (t.assignments.c.model_id == assignment.model))
                .values(**values))

    def _for_node(self, conn: Connection, node: str) -> dict[SubscriptionKey, Assignment]:
        a, c = t.assignments, t.cameras
        rows = conn.execute(sa.select(a).join(c, c.c.camera_id == a.c.camera_id).where(c.c.node == node)
                            .order_by(a.c.camera_id, a.c.model_id))
        return {(row.camera_id, row.model_id): _assignment(row) for row in rows}


def _assignment(row: Any) -> Assignment:
    return Assignment(camera=row.camera_id, model=row.model_id, fps=float(row.fps),
                      max_in_flight=int(row.max_in_flight), config=dict(row.config or {}))


class NodeAssignments:
    """The assignment source of ``ruth-ai run --node NODE``: that node's rows (see ``reconcile.AssignmentSource``).

    Its signature is the change revision, which triggers bump on any change to
    cameras, assignments or the registry, whoever made it. A row that does not
    validate (written around the CLI and the API) is an AssignmentError, so the
    reconciler keeps what runs, as it does for a broken YAML file."""

    def __init__(self, store: AssignmentStore, node: str) -> None:
        self.store = store
        self.node = check_node(node)

    def load(self) -> list[Assignment]:
        try:
            return self.store.for_node(self.node)
        except ValidationError as exc:
            raise AssignmentError(f"node {self.node} in {self.store.db.location.display()}: an assignment row is "
                                  f"invalid: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None

    def signature(self) -> Hashable:
        return revision(self.store.db)

    def describe(self) -> str:
        return f"node {self.node} in {self.store.db.location.display()}"
