"""FPS gating: which frames of a camera a subscription takes, decided from frame timestamps.

The gate keeps a grid of due times ``period`` apart, anchored at the first
frame it sees. A frame is selected when its capture timestamp reaches the next
due time (minus a small tolerance for timestamp jitter); the due time then
advances by exactly one period, so the selected rate converges on the target
whatever the camera's own rate or the polling delay. Wall-clock sleeps are
never involved, so nothing drifts. After a gap (camera stalled, frames
missed) the grid re-anchors instead of bursting to catch up.
"""

from __future__ import annotations

from typing import Optional

NS_PER_S = 1_000_000_000
JITTER_TOLERANCE = 0.25
"""Fraction of the period by which a frame may arrive early and still count as due."""


class FpsGate:
    """Selects frames for one subscription; not thread-safe (one stream agent owns it)."""

    def __init__(self, fps: float) -> None:
        if fps <= 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.fps = fps
        self.period_ns = int(NS_PER_S / fps)
        self.tolerance_ns = int(self.period_ns * JITTER_TOLERANCE)
        self._next_due_ns: Optional[int] = None
        self._last_ts_ns: Optional[int] = None

    @property
    def next_due_ns(self) -> Optional[int]:
        """The capture timestamp of the frame this gate expects to take next; None before its first frame."""
        return self._next_due_ns

    def reset(self) -> None:
        """Forget the grid: the camera's ring was replaced or restarted."""
        self._next_due_ns = None
        self._last_ts_ns = None

    def offer(self, timestamp_ns: int) -> bool:
        """True when the frame captured at ``timestamp_ns`` should be sent to the model."""
        if self._last_ts_ns is not None and timestamp_ns <= self._last_ts_ns:
            if timestamp_ns == self._last_ts_ns:
                return False  # the same frame seen twice
            self.reset()  # time went backwards: a new writer
        self._last_ts_ns = timestamp_ns
        if self._next_due_ns is None:
            self._next_due_ns = timestamp_ns + self.period_ns
            return True
        if timestamp_ns < self._next_due_ns - self.tolerance_ns:
            return False
        self._next_due_ns += self.period_ns
        if self._next_due_ns <= timestamp_ns - self.tolerance_ns:
            self._next_due_ns = timestamp_ns + self.period_ns  # behind by a whole period: re-anchor
        return True
