"""One camera bound to one model at a target FPS, with the counts that prove nothing was lost.

Every frame the FPS gate selects ends in exactly one of: a result event, an
error event, or a drop with a reason. Until then it is queued (waiting in the
core for the model to have room) or in flight (sent, not yet answered). So at
any instant ``selected = results + errors + dropped + queued + in_flight``,
and once the core has stopped ``queued`` and ``in_flight`` are 0.

The counters are plain integers touched only on the core's event loop, so
counting a frame takes no lock; metrics and ``counts`` read them from there.
"""

from __future__ import annotations

import json
from bisect import bisect_left
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from ai_model_container.contract.shm_layout import segment_reference

from .assignments import Assignment, SubscriptionKey
from .fps import FpsGate

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
"""Upper bounds (seconds) of the latency histogram's buckets; one more bucket holds the rest."""


class DropReason(str, Enum):
    """Why a selected frame was never sent (CONTRACT.md and the README say when each applies)."""

    IN_FLIGHT_LIMIT = "in_flight_limit"
    """The pair already has max_in_flight frames queued or out: the model is busy with this camera."""
    MODEL_SATURATED = "model_saturated"
    """The model's in-flight limit stayed full for one period of the subscription: the frame went stale."""
    MODEL_UNAVAILABLE = "model_unavailable"
    """The model is marked unhealthy: fail fast, nothing is sent."""
    REQUEST_TOO_LARGE = "request_too_large"
    """The request would exceed the model's limits.max_message_bytes: it would break the connection."""
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
    queued: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())

    @property
    def balanced(self) -> bool:
        return self.selected == self.results + self.errors + self.dropped_total + self.queued + self.in_flight

    def __add__(self, other: "SubscriptionCounts") -> "SubscriptionCounts":
        dropped = Counter(self.dropped)
        dropped.update(other.dropped)
        return SubscriptionCounts(self.selected + other.selected, self.results + other.results,
                                  self.errors + other.errors, self.in_flight + other.in_flight,
                                  self.queued + other.queued, dict(dropped))


class Subscription:
    """A pair's gate, its request template and its counters (event-loop thread only)."""

    def __init__(self, assignment: Assignment) -> None:
        self.assignment = assignment
        self.camera_id = assignment.camera
        self.model_id = assignment.model
        self.config: dict[str, Any] = dict(assignment.config)
        self.gate = FpsGate(assignment.fps)
        self.period_s = 1.0 / assignment.fps
        self.max_in_flight = assignment.max_in_flight
        self.active = True
        self.selected = 0
        self.results = 0
        self.errors = 0
        self.queued = 0
        self.in_flight = 0
        self.detections = 0
        self.dropped: Counter[str] = Counter()
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0
        self._template = _request_template(assignment)

    @property
    def key(self) -> SubscriptionKey:
        return (self.camera_id, self.model_id)

    @property
    def outstanding(self) -> int:
        return self.queued + self.in_flight

    def request(self, frame_id: int, width: int, height: int, timestamp_ns: int, sent_at: float) -> bytes:
        """The inference request body for one frame: the pre-encoded part plus five numbers.

        Equal to what ``InferenceRequest`` would encode (a test checks it), at a fraction of the cost.
        """
        return b"%s%d,\"width\":%d,\"height\":%d,\"timestamp_ns\":%d},\"timestamp\":%r}" % (
            self._template, frame_id, width, height, timestamp_ns, sent_at)

    def drop(self, reason: DropReason) -> None:
        self.dropped[reason.value] += 1

    def answered(self, ok: bool, latency_s: float, detections: int) -> None:
        """A frame sent to the model came back as a result (``ok``) or an error event."""
        self.in_flight -= 1
        if ok:
            self.results += 1
        else:
            self.errors += 1
        self.detections += detections
        self.latency_buckets[bisect_left(LATENCY_BUCKETS, latency_s)] += 1
        self.latency_sum += latency_s

    def counts(self) -> SubscriptionCounts:
        return SubscriptionCounts(self.selected, self.results, self.errors, self.in_flight, self.queued,
                                  dict(self.dropped))

    def retire(self) -> None:
        """Stop taking frames; frames queued or in flight still finish and are counted."""
        self.active = False


def _request_template(assignment: Assignment) -> bytes:
    """Everything of the request JSON up to the frame id; the fields that vary per frame come last."""
    head = {
        "frame_reference": segment_reference(assignment.camera),
        "camera_id": assignment.camera,
        "model_id": assignment.model,
        "config": assignment.config,
    }
    encoded = json.dumps(head, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return (encoded[:-1] + ',"frame_metadata":{"frame_id":').encode("utf-8")
