"""Stream agents: one thread per camera that watches its ring and hands selected frames on.

The agent polls the camera's newest frame id and that frame's capture
timestamp (``FrameReader.newest_frame``: the header and the slot record under
the slot's seqlock, no pixels), and offers it
to each subscription's FPS gate. Only the newest frame is ever considered:
for live analytics a fresher frame beats an older one. The agent never waits
for a model; dispatching is non-blocking, so a slow model costs skipped frames,
never a stalled camera, and the VAS writer is never touched.

Between frames the agent sleeps until the earliest capture time any of its
gates will take next (less the time the current frame took to reach it), then
polls every ``poll_interval_s``: a camera at 25 fps feeding a 2 fps
subscription is looked at a few times per selected frame, not 200 times a
second. The gates still decide from timestamps, so a late wake-up costs
latency, never rate.

A segment that disappears puts the agent in the ``waiting`` state (it keeps
polling, more slowly); one that comes back or is replaced (frame ids go
backwards, or a new geometry) resets the FPS gates. Nothing is restarted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Callable, Optional

from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.shm_layout import segment_reference

from .subscription import Subscription

logger = logging.getLogger(__name__)

DEFAULT_POLL_INTERVAL_S = 0.005
MISSING_POLL_INTERVAL_S = 0.1
MAX_DELIVERY_LAG_S = 0.1
"""Bound on how much earlier than due the agent wakes, should the writer's clock not be this host's."""


@dataclass(frozen=True)
class SelectedFrame:
    camera_id: str
    frame_id: int
    timestamp_ns: int
    width: int
    height: int


Dispatch = Callable[[Subscription, SelectedFrame], None]


class StreamAgent:
    def __init__(self, camera_id: str, reader: FrameReader, dispatch: Dispatch,
                 poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.camera_id = camera_id
        self.reference = segment_reference(camera_id)
        self.state = "starting"
        self.frames_seen = 0
        self.segment_resets = 0
        self._reader = reader
        self._dispatch = dispatch
        self._poll_interval_s = poll_interval_s
        self._subscriptions: dict[str, Subscription] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"agent-{camera_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def put(self, subscription: Subscription) -> Optional[Subscription]:
        """Add or replace the subscription for its model; returns the one it replaced."""
        with self._lock:
            previous = self._subscriptions.get(subscription.model_id)
            self._subscriptions[subscription.model_id] = subscription
        return previous

    def remove(self, model_id: str) -> Optional[Subscription]:
        with self._lock:
            return self._subscriptions.pop(model_id, None)

    @property
    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._subscriptions.values())

    def _run(self) -> None:
        last_frame_id = 0
        geometry: Optional[tuple[int, int, int]] = None
        while not self._stop.is_set():
            try:
                header, newest, timestamp_ns = self._reader.newest_frame(self.camera_id)
            except RequestError as exc:
                if self.state != "waiting":
                    logger.warning("camera %s: %s; waiting for its segment", self.camera_id, exc.message)
                    self.state = "waiting"
                self._stop.wait(MISSING_POLL_INTERVAL_S)
                continue
            shape = (header.width, header.height, header.slot_count)
            if self.state == "waiting" or shape != geometry or newest < last_frame_id:
                if geometry is not None:
                    logger.info("camera %s: segment (re)appeared as %dx%d; restarting its FPS gates",
                                self.camera_id, header.width, header.height)
                    self.segment_resets += 1
                    for subscription in self.subscriptions:
                        subscription.gate.reset()
                geometry, last_frame_id = shape, 0
                self.state = "streaming"
            if newest == last_frame_id or newest == 0:
                self._stop.wait(self._poll_interval_s)
                continue
            last_frame_id = newest
            if timestamp_ns == 0:
                continue  # its slot is being rewritten: the next poll sees the newer frame
            self.frames_seen += 1
            frame = SelectedFrame(self.camera_id, newest, timestamp_ns, header.width, header.height)
            subscriptions = self.subscriptions
            for subscription in subscriptions:
                if subscription.gate.offer(timestamp_ns):
                    self._dispatch(subscription, frame)
            self._stop.wait(self._idle_after(timestamp_ns, subscriptions))

    def _idle_after(self, timestamp_ns: int, subscriptions: list[Subscription]) -> float:
        """Seconds until a gate could take a frame, minus the frame's delivery lag; at least one poll interval."""
        dues = [s.gate.earliest_due_ns for s in subscriptions]
        if not dues or any(due is None for due in dues):
            return self._poll_interval_s
        lag_s = min(max((time.time_ns() - timestamp_ns) / 1e9, 0.0), MAX_DELIVERY_LAG_S)
        until_due_s = (min(d for d in dues if d is not None) - timestamp_ns) / 1e9 - lag_s
        return max(self._poll_interval_s, until_due_s)

