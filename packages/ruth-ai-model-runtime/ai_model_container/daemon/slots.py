"""Admission control: how many inferences may run at once in one daemon."""

from __future__ import annotations

import threading


class InferenceSlots:
    """At most ``count`` inferences at once; the slots taken are the requests in flight.

    One plain lock for both, taken and given back on every request, instead of a
    semaphore (Python-level Condition) plus a separately locked counter.
    """

    def __init__(self, count: int) -> None:
        self._count = count
        self._free = count
        self._waiting = 0
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    @property
    def taken(self) -> int:
        return self._count - self._free

    def take(self, timeout_s: float) -> bool:
        """Take a slot, waiting up to ``timeout_s`` for one; False if none came free."""
        with self._lock:
            if self._free == 0:
                self._waiting += 1
                try:
                    if not self._freed.wait_for(lambda: self._free > 0, timeout_s):
                        return False
                finally:
                    self._waiting -= 1
            self._free -= 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self._free += 1
            if self._waiting:
                self._freed.notify()
