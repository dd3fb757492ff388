"""Camera watches: when to look at each camera's ring, and which frames its subscriptions take.

All cameras share the core's event loop; a camera costs a timer, not a
thread. A watch looks at its ring (``FrameReader.newest_frame``: the header
and the slot record under the seqlock, never the pixels) only when one of its
subscriptions expects a frame: after a frame is taken, it sleeps until the
capture time the earliest gate wants next (measured from the frame just seen,
so the writer's delivery delay cancels out), then looks every
``poll_interval_s`` until the newer frame is there. A camera at 25 fps
feeding a 2 fps subscription is looked at a few times per selected frame, not
200 times a second. Only the newest frame is considered: for live analytics a
fresher frame beats an older one. The gates decide from capture timestamps,
so a late wake-up costs latency, never rate; the writer is never waited for.

Whatever the ring's path holds (nothing, a FIFO, a directory, a truncated or
garbage segment), the watch counts the reason and looks again
``MISSING_POLL_INTERVAL_S`` later: a camera is never given up. A ring that
comes back or is replaced (frame ids go backwards, a new geometry) restarts
its gates.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Optional

from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader

from .subscription import Subscription

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 0.005
MISSING_POLL_INTERVAL_S = 0.1
DELIVERY_S = 0.001
"""How long after its capture time a frame is expected to be in the ring."""
MAX_SLEEP_S = 1.0
COALESCE_S = 0.002
"""How late a look may be so that cameras due close together share one wake-up of the loop."""
"""Longest a watch sleeps between looks, whatever its gates say (a new subscription, a clock jump)."""


@dataclass(slots=True)
class SelectedFrame:
    camera_id: str
    frame_id: int
    timestamp_ns: int
    width: int
    height: int


Dispatch = Callable[[Subscription, SelectedFrame], None]


class Wakeups:
    """When each camera looks next: a heap and one loop timer for all of them.

    Cameras of one rate wake together (VAS ticks them in step); a heap pop per
    camera and one timer per instant cost less than a loop timer per look. The
    timer fires ``COALESCE_S`` after the earliest camera is due, so cameras whose
    phases are spread (500 cameras at 10 fps: one due every 0.2 ms) are looked at
    in groups rather than with a wake-up each; the gates decide on capture
    timestamps, so the lateness costs that much latency and no frames.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, "CameraWatch"]] = []
        self._order = itertools.count()
        self._timer: Optional[asyncio.TimerHandle] = None
        self._armed_for = math.inf

    def at(self, when: float, watch: "CameraWatch") -> None:
        """Have ``watch`` look at (loop time) ``when``."""
        heapq.heappush(self._heap, (when, next(self._order), watch))
        self._arm(when + COALESCE_S)

    def _arm(self, fire_at: float) -> None:
        if fire_at < self._armed_for:
            if self._timer is not None:
                self._timer.cancel()
            self._armed_for = fire_at
            self._timer = self._loop.call_at(fire_at, self._fire)

    def _fire(self) -> None:
        self._timer, self._armed_for = None, math.inf
        heap, now = self._heap, self._loop.time()
        while heap and heap[0][0] <= now:
            heapq.heappop(heap)[2].look()  # may book its next look through at(), arming the timer
        if heap:
            # A look may have booked later than a camera already waiting: the timer is for the earliest.
            self._arm(heap[0][0] + COALESCE_S)


class CameraWatch:
    """One camera's ring and the subscriptions it feeds; every method runs on the core's loop."""

    def __init__(self, camera_id: str, reader: FrameReader, dispatch: Dispatch, wakeups: Wakeups,
                 loop: asyncio.AbstractEventLoop, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.camera_id = camera_id
        self.state = "starting"
        self.frames_seen = 0
        self.segment_resets = 0
        self.ring_errors: Counter[str] = Counter()
        """Looks that found no usable ring, by reason (FRAME_NOT_FOUND, FRAME_INVALID, internal)."""
        self.subscriptions: dict[str, Subscription] = {}
        self._reader = reader
        self._dispatch = dispatch
        self._wakeups = wakeups
        self._loop = loop
        self._poll_interval_s = poll_interval_s
        self._last_frame_id = 0
        self._last_timestamp_ns = 0
        self._interval_ns = 0.0
        """The camera's frame interval, a moving average over the frames seen (0 until known)."""
        self._geometry: Optional[tuple[int, int, int]] = None

    def start(self) -> None:
        self._wakeups.at(self._loop.time(), self)

    def stop(self) -> None:
        self.state = "stopped"  # its pending wake-up finds it stopped and does nothing

    def look(self) -> None:
        """Look at the ring now and book the next look (called by ``Wakeups``)."""
        if self.state == "stopped":
            return
        try:
            delay = self._look_once()
        except Exception:
            logger.exception("camera %s: internal error while looking at its ring", self.camera_id)
            self.ring_errors["internal"] += 1
            delay = MISSING_POLL_INTERVAL_S
        if self.state != "stopped":
            self._wakeups.at(self._loop.time() + delay, self)

    def _look_once(self) -> float:
        """Look at the ring once, hand on what the gates take; returns how long to sleep."""
        try:
            header, newest, timestamp_ns = self._reader.newest_frame(self.camera_id)
        except RequestError as exc:
            self.ring_errors[exc.code.value] += 1
            if self.state != "waiting":
                logger.warning("camera %s: %s; waiting for a usable ring", self.camera_id, exc.message)
                self.state = "waiting"
            return MISSING_POLL_INTERVAL_S
        shape = (header.width, header.height, header.slot_count)
        if self.state == "waiting" or shape != self._geometry or newest < self._last_frame_id:
            if self._geometry is not None:
                logger.info("camera %s: ring (re)appeared as %dx%d; restarting its FPS gates",
                            self.camera_id, header.width, header.height)
                self.segment_resets += 1
                for subscription in self.subscriptions.values():
                    subscription.gate.reset()
            self._geometry, self._last_frame_id, self._last_timestamp_ns, self._interval_ns = shape, 0, 0, 0.0
            self.state = "streaming"
        if newest == self._last_frame_id or newest == 0:
            return self._poll_interval_s
        previous_id, self._last_frame_id = self._last_frame_id, newest
        if timestamp_ns == 0:
            return self._poll_interval_s  # its slot is being rewritten: the next look sees the newer frame
        self._learn_interval(newest - previous_id, timestamp_ns)
        self.frames_seen += 1
        frame = SelectedFrame(self.camera_id, newest, timestamp_ns, header.width, header.height)
        for subscription in list(self.subscriptions.values()):
            if subscription.gate.offer(timestamp_ns):
                self._dispatch(subscription, frame)
        return self._sleep_after(timestamp_ns)

    def _learn_interval(self, frames: int, timestamp_ns: int) -> None:
        if self._last_timestamp_ns and 0 < frames < 1000 and timestamp_ns > self._last_timestamp_ns:
            interval = (timestamp_ns - self._last_timestamp_ns) / frames
            self._interval_ns = interval if not self._interval_ns else 0.8 * self._interval_ns + 0.2 * interval
        self._last_timestamp_ns = timestamp_ns

    def _sleep_after(self, timestamp_ns: int) -> float:
        """Until the first frame the earliest gate would take is captured (plus its delivery), by the clock.

        Capture times are this host's wall clock (the writer shares the host), so the wake-up is
        anchored on when that frame is taken, not on when this look happened: the pick-up delay
        stays at the writer's delivery time instead of carrying whatever lateness a look had.
        """
        earliest = None
        for subscription in self.subscriptions.values():
            gate = subscription.gate
            if gate.next_due_ns is None:
                return self._poll_interval_s
            acceptable = gate.next_due_ns - gate.tolerance_ns
            earliest = acceptable if earliest is None else min(earliest, acceptable)
        if earliest is None:
            return self._poll_interval_s
        expected = earliest
        if self._interval_ns > 0:
            expected = timestamp_ns + math.ceil(max(earliest - timestamp_ns, 1) / self._interval_ns) * self._interval_ns
        wait_s = (expected - time.time_ns()) / 1e9 + DELIVERY_S
        return min(max(wait_s, self._poll_interval_s), MAX_SLEEP_S)
