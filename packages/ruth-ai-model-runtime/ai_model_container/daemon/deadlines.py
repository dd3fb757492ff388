"""Per-request deadlines enforced without a thread hop per request.

Inference runs on the connection's own thread (the cheapest path for latency
and CPU). A single watchdog thread scans the requests in flight every few
milliseconds and fires the expiry callback of any that passed its deadline;
the callback answers TIMEOUT and closes the connection, while the stuck
handler keeps its inference slot until it returns (Python cannot kill a
thread). Registering a request is a dict insertion: no wake-up, no syscall.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import Callable

SCAN_INTERVAL_S = 0.005

logger = logging.getLogger(__name__)


class Watchdog:
    def __init__(self, scan_interval_s: float = SCAN_INTERVAL_S) -> None:
        self._scan_interval_s = scan_interval_s
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[float, Callable[[], None]]] = {}
        self._tickets = itertools.count()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
        self._thread.start()

    def track(self, deadline: float, on_expire: Callable[[], None]) -> int:
        """Call ``on_expire`` once if the request is still tracked at ``deadline`` (monotonic)."""
        ticket = next(self._tickets)
        with self._lock:
            self._pending[ticket] = (deadline, on_expire)
        return ticket

    def untrack(self, ticket: int) -> None:
        with self._lock:
            self._pending.pop(ticket, None)

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stopped.wait(self._scan_interval_s):
            now = time.monotonic()
            with self._lock:
                expired = [ticket for ticket, (deadline, _) in self._pending.items() if deadline <= now]
                callbacks = [self._pending.pop(ticket)[1] for ticket in expired]
            for callback in callbacks:
                try:
                    callback()
                except Exception:
                    logger.exception("deadline callback failed")
