"""Keeps the running subscriptions equal to the assignments, filtered by the registry.

The assignments come from an ``AssignmentSource``: a YAML file
(``YamlAssignments``, single-host use) or the database rows of one node
(``assignment_source.DatabaseAssignments``, ``ruth-ai run --node``); the
reconciler does not care which. A reconciliation loads the assignments (and
the routing file, if any), drops every assignment the registry rejects
(unknown or disabled model: fail closed, each with its reason logged), and
hands the rest to ``Core.apply``, which changes only what differs. It runs at
start, whenever the source's signature changes (a file's mtime, size and
inode; the database's change revision), whenever the registry changes
(``ruth-ai models disable`` stops that model's subscriptions this way), on
SIGHUP, and when ``request`` is called (PostgreSQL NOTIFY does that).

A file that does not parse, or a database that does not answer, is reported
and the current subscriptions are kept: a typo or an outage must not stop
every camera. Once the database answers again the reconciler catches up.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable, Optional, Protocol, Union

from .assignments import Assignment, AssignmentError, config_problem, load_assignments
from .core import Core, ReconcileResult
from .registry import ModelRegistry
from .routing import RoutingError, load_routing
from .storage.errors import StorageError

logger = logging.getLogger(__name__)

DEFAULT_WATCH_INTERVAL_S = 0.5
SINK_FLUSH_INTERVAL_S = 0.5

FileSignature = Optional[tuple[int, int, int]]


@dataclass(frozen=True)
class Outcome:
    result: ReconcileResult
    rejected: list[tuple[Assignment, str]] = field(default_factory=list)
    error: Optional[str] = None
    """Why the files could not be read; the previous subscriptions were kept."""


class AssignmentSource(Protocol):
    """Where the desired assignments come from (a YAML file, or the database rows of one node)."""

    def load(self) -> list[Assignment]:
        """The assignments now; raises AssignmentError (or StorageError) when they cannot be read."""

    def signature(self) -> Hashable:
        """Cheap; changes whenever ``load`` may return something different (may raise StorageError)."""

    def describe(self) -> str:
        """For log lines: the file, or the node and database."""


class YamlAssignments:
    """An assignments file; its signature is the file's (mtime, size, inode)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def load(self) -> list[Assignment]:
        return load_assignments(self.path).assignments

    def signature(self) -> Hashable:
        return _file_signature(self.path)

    def describe(self) -> str:
        return str(self.path)


def check_assignments(assignments: list[Assignment], registry: ModelRegistry) -> tuple[list[Assignment], list[tuple[Assignment, str]]]:
    """Split assignments into those that may run and those rejected, with the reason: a config over
    the size limit, or a model the registry does not allow (one registry query). One rejection never
    affects the others."""
    reasons = registry.rejections(a.model for a in assignments)
    accepted: list[Assignment] = []
    rejected: list[tuple[Assignment, str]] = []
    for assignment in assignments:
        problem = config_problem(assignment) or reasons[assignment.model]
        if problem is None:
            accepted.append(assignment)
        else:
            rejected.append((assignment, problem))
    return accepted, rejected


class Reconciler:
    def __init__(self, core: Core, assignments: Union[AssignmentSource, Path], registry: ModelRegistry,
                 routing_path: Optional[Path] = None) -> None:
        self.core = core
        self.source: AssignmentSource = YamlAssignments(assignments) if isinstance(assignments, Path) else assignments
        self.routing_path = routing_path
        self.registry = registry
        self.last: Optional[Outcome] = None
        self._requested = threading.Event()
        self._wake = threading.Event()
        self._seen: Optional[tuple[Hashable, FileSignature, int]] = None
        self._unavailable: Optional[str] = None

    def request(self) -> None:
        """Ask for a reconciliation now (safe from a signal handler)."""
        self._requested.set()
        self._wake.set()

    def wake(self) -> None:
        """Make ``watch`` look at its stop event now."""
        self._wake.set()

    def reconcile(self) -> Outcome:
        self._requested.clear()
        try:
            self._seen = self._signature()
            wanted = self.source.load()
            if self.routing_path is not None:
                self.core.set_routing(load_routing(self.routing_path))
            accepted, rejected = check_assignments(wanted, self.registry)
        except (AssignmentError, RoutingError, StorageError) as exc:
            if isinstance(exc, StorageError):
                self._seen = None  # try again as soon as the database answers
                self._note_unavailable(exc)
            else:
                logger.error("keeping the current subscriptions: %s", exc)
            self.last = Outcome(ReconcileResult(unchanged=[s.key for s in self.core.subscriptions()]), error=str(exc))
            return self.last
        self._note_available()
        for assignment, reason in rejected:
            logger.error("assignment %s -> %s rejected: %s", assignment.camera, assignment.model, reason)
        self.last = Outcome(self.core.apply(accepted), rejected)
        return self.last

    def due(self) -> bool:
        """True when asked (SIGHUP, NOTIFY) or the assignments, routing file or registry changed since the last run."""
        if self._requested.is_set():
            return True
        try:
            signature = self._signature()
        except StorageError as exc:
            self._note_unavailable(exc)
            return False
        self._note_available()
        return signature != self._seen

    def watch(self, stop: threading.Event, interval_s: float = DEFAULT_WATCH_INTERVAL_S) -> None:
        """Reconcile when asked or when a file changed, until ``stop``; flushes the event sink meanwhile."""
        last_check = time.monotonic()
        while not stop.is_set():
            self._wake.wait(min(interval_s, SINK_FLUSH_INTERVAL_S))
            self._wake.clear()
            if stop.is_set():
                break
            now = time.monotonic()
            if self._requested.is_set() or now - last_check >= interval_s:
                last_check = now
                if self.due():
                    self.reconcile()
            self.core.sink.flush()

    @property
    def assignments_path(self) -> Optional[Path]:
        return self.source.path if isinstance(self.source, YamlAssignments) else None

    def _signature(self) -> tuple[Hashable, FileSignature, int]:
        return (self.source.signature(), _file_signature(self.routing_path), self.registry.revision())

    def _note_unavailable(self, exc: StorageError) -> None:
        """Log once per outage, not every poll."""
        if self._unavailable is None:
            logger.error("keeping the current subscriptions: %s", exc)
        self._unavailable = str(exc)

    def _note_available(self) -> None:
        if self._unavailable is not None:
            logger.warning("the database answers again")
            self._unavailable = None


def _file_signature(path: Optional[Path]) -> FileSignature:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
