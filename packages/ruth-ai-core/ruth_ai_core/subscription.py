"""One camera bound to one model at a target FPS, with the counts that prove nothing was lost.

Every frame the FPS gate selects ends in exactly one of: a result event, an
error event, or a drop with a reason; while a request is out it is in
flight. So at any instant ``selected = results + errors + dropped + in_flight``,
and once the core has stopped ``in_flight`` is 0.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Optional

from .assignments import Assignment, SubscriptionKey
from .fps import FpsGate
from .metrics import CoreMetrics


class DropReason(str, Enum):
    IN_FLIGHT_LIMIT = "in_flight_limit"
    """The pair already has max_in_flight requests out: the model is busy with this camera."""
    POOL_EXHAUSTED = "pool_exhausted"
    """Every pooled connection to the model is busy (with other cameras)."""
    MODEL_UNAVAILABLE = "model_unavailable"
    """The model is marked unhealthy: fail fast, nothing is sent."""
    STOPPING = "stopping"
    """The subscription or the core was shutting down when the frame was selected."""
    INTERNAL = "internal"
    """The core itself failed while handling the frame (logged)."""


@dataclass(frozen=True)
class SubscriptionCounts:
    selected: int = 0
    results: int = 0
    errors: int = 0
    in_flight: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        return self.selected == self.results + self.errors + self.dropped_total + self.in_flight

    def __add__(self, other: "SubscriptionCounts") -> "SubscriptionCounts":
        dropped = Counter(self.dropped)
        dropped.update(other.dropped)
        return SubscriptionCounts(self.selected + other.selected, self.results + other.results,
                                  self.errors + other.errors, self.in_flight + other.in_flight, dict(dropped))


class Subscription:
    def __init__(self, assignment: Assignment, metrics: CoreMetrics) -> None:
        self.assignment = assignment
        self.camera_id = assignment.camera
        self.model_id = assignment.model
        self.config: dict[str, Any] = dict(assignment.config)
        self.gate = FpsGate(assignment.fps)
        self.active = True
        self._lock = threading.Lock()
        self._selected = 0
        self._results = 0
        self._errors = 0
        self._in_flight = 0
        self._dropped: Counter[str] = Counter()
        labels = (self.camera_id, self.model_id)
        self._metrics = metrics
        self._m_selected = metrics.selected.labels(*labels)
        self._m_latency = metrics.latency.labels(*labels)
        self._m_results = metrics.events.labels(*labels, "result")
        self._m_errors = metrics.events.labels(*labels, "error")
        self._m_detections = metrics.detections.labels(*labels)
        self._m_in_flight = metrics.in_flight.labels(self.model_id)
        self._m_requests_ok = metrics.requests.labels(self.model_id, "ok")
        self._m_skipped = {reason: metrics.skipped.labels(*labels, reason.value) for reason in DropReason}
        metrics.target_fps.labels(*labels).set(assignment.fps)

    @property
    def key(self) -> SubscriptionKey:
        return (self.camera_id, self.model_id)

    def select(self) -> None:
        with self._lock:
            self._selected += 1
        self._m_selected.inc()

    def begin(self) -> bool:
        """Take an in-flight slot for a selected frame; False when the pair is at max_in_flight."""
        with self._lock:
            if self._in_flight >= self.assignment.max_in_flight:
                return False
            self._in_flight += 1
        self._m_in_flight.inc()
        return True

    def drop(self, reason: DropReason, in_flight: bool = False) -> None:
        """Count a selected frame that will never be sent; ``in_flight`` gives back a slot taken by begin."""
        with self._lock:
            self._dropped[reason.value] += 1
            if in_flight:
                self._in_flight -= 1
        if in_flight:
            self._m_in_flight.dec()
        self._m_skipped[reason].inc()

    def complete(self, error_code: Optional[str], latency_s: float, detections: int) -> None:
        """A request begun with ``begin`` ended as an event (``error_code`` None for a result).

        Metric children are looked up once per subscription: labels() per request was a
        measurable share of the core's CPU per request."""
        ok = error_code is None
        with self._lock:
            self._in_flight -= 1
            if ok:
                self._results += 1
            else:
                self._errors += 1
        self._m_in_flight.dec()
        self._m_latency.observe(latency_s)
        if ok:
            self._m_requests_ok.inc()
            self._m_results.inc()
        else:
            self._metrics.requests.labels(self.model_id, error_code).inc()
            self._m_errors.inc()
        if detections:
            self._m_detections.inc(detections)

    def counts(self) -> SubscriptionCounts:
        with self._lock:
            return SubscriptionCounts(self._selected, self._results, self._errors, self._in_flight, dict(self._dropped))

    def retire(self) -> None:
        """Stop taking frames; requests in flight still finish and are counted."""
        self.active = False
        self._metrics.target_fps.remove(self.camera_id, self.model_id)
