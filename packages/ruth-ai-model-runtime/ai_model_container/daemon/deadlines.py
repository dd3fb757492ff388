"""A fixed delay after each request's arrival, kept for every request with one loop timer.

Every request of a daemon gets the same ``queue_wait_ms`` and the same
``timeout_ms``, so their deadlines fall in arrival order. A FIFO of requests
and one timer armed for its head replace a timer per request (and its
cancellation): answered requests are only skipped when their turn comes.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Callable, Generic, Optional, Protocol, TypeVar


class Tracked(Protocol):
    done: bool
    """Answered already: its deadline no longer matters."""


T = TypeVar("T", bound=Tracked)


class Deadlines(Generic[T]):
    """Calls ``on_due(item)`` for each item still not done ``delay_s`` after it was added; loop thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, delay_s: float, on_due: Callable[[T], None]) -> None:
        self._loop = loop
        self._delay_s = delay_s
        self._on_due = on_due
        self._pending: deque[tuple[float, T]] = deque()
        self._timer: Optional[asyncio.TimerHandle] = None

    def add(self, item: T) -> None:
        self._pending.append((self._loop.time() + self._delay_s, item))
        if self._timer is None:
            self._timer = self._loop.call_at(self._pending[0][0], self._fire)

    def _fire(self) -> None:
        self._timer = None
        pending, now = self._pending, self._loop.time()
        while pending and (pending[0][1].done or pending[0][0] <= now):
            _, item = pending.popleft()
            if not item.done:
                self._on_due(item)
        if pending:
            self._timer = self._loop.call_at(pending[0][0], self._fire)
