"""Keeps the running subscriptions equal to the assignments file, filtered by the registry.

A reconciliation reads the assignments file (and the routing file, if any),
drops every assignment the registry rejects (unknown or disabled model: fail
closed, each with its reason logged), and hands the rest to ``Core.apply``,
which changes only what differs. It runs at start, whenever the assignments
or routing file changes (polled by mtime, size and inode), whenever the
registry database sees a commit from another process (``ruth-ai models
disable`` stops that model's subscriptions this way), and on SIGHUP.

A file that does not parse is reported and the current subscriptions are kept:
a typo must not stop every camera.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from .assignments import Assignment, AssignmentError, load_assignments
from .core import Core, ReconcileResult
from .registry import AssignmentRejected, ModelRegistry
from .routing import RoutingError, load_routing

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


def check_assignments(assignments: list[Assignment], registry: ModelRegistry) -> tuple[list[Assignment], list[tuple[Assignment, str]]]:
    """Split assignments into those the registry allows and those it rejects, with the reason."""
    accepted: list[Assignment] = []
    rejected: list[tuple[Assignment, str]] = []
    for assignment in assignments:
        try:
            registry.check_assignable(assignment.model)
        except AssignmentRejected as exc:
            rejected.append((assignment, str(exc)))
            continue
        accepted.append(assignment)
    return accepted, rejected


class Reconciler:
    def __init__(self, core: Core, assignments_path: Path, registry: ModelRegistry,
                 routing_path: Optional[Path] = None) -> None:
        self.core = core
        self.assignments_path = assignments_path
        self.routing_path = routing_path
        self.registry = registry
        self.last: Optional[Outcome] = None
        self._requested = threading.Event()
        self._wake = threading.Event()
        self._seen: tuple[FileSignature, FileSignature, int] = (None, None, -1)

    def request(self) -> None:
        """Ask for a reconciliation now (safe from a signal handler)."""
        self._requested.set()
        self._wake.set()

    def wake(self) -> None:
        """Make ``watch`` look at its stop event now."""
        self._wake.set()

    def reconcile(self) -> Outcome:
        self._requested.clear()
        self._seen = self._signature()
        try:
            wanted = load_assignments(self.assignments_path).assignments
            if self.routing_path is not None:
                self.core.set_routing(load_routing(self.routing_path))
        except (AssignmentError, RoutingError) as exc:
            logger.error("keeping the current subscriptions: %s", exc)
            self.last = Outcome(ReconcileResult(unchanged=[s.key for s in self.core.subscriptions()]), error=str(exc))
            return self.last
        accepted, rejected = check_assignments(wanted, self.registry)
        for assignment, reason in rejected:
            logger.error("assignment %s -> %s rejected: %s", assignment.camera, assignment.model, reason)
        self.last = Outcome(self.core.apply(accepted), rejected)
        return self.last

    def due(self) -> bool:
        """True when SIGHUP asked for it or a watched file or the registry changed since the last run."""
        return self._requested.is_set() or self._signature() != self._seen

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

    def _signature(self) -> tuple[FileSignature, FileSignature, int]:
        return (_file_signature(self.assignments_path), _file_signature(self.routing_path), self.registry.data_version())


def _file_signature(path: Optional[Path]) -> FileSignature:
    if path is None:
        return None
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return (stat.st_mtime_ns, stat.st_size, stat.st_ino)
