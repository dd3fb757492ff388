"""Where inference requests wait for the model: one queue per daemon, drained in batches by workers.

Requests from every connection join one queue. ``workers`` threads
(``limits.max_concurrent_requests``) take them: one at a time when the model
does not batch, else up to ``max_batch_size`` at once, waiting at most
``max_queue_delay_s`` after the oldest request arrived for the batch to fill
(Triton's dynamic batcher closes a batch the same way). A request whose
deadline passed while it waited was already answered by the service's timer
and is skipped, so it never takes room in a batch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Callable, Generic, Protocol, TypeVar


class Waiting(Protocol):
    received: float
    """When the request was read (time.monotonic())."""
    done: bool
    """Answered already (deadline, shutdown): not to be run."""


J = TypeVar("J", bound=Waiting)


class Batcher(Generic[J]):
    def __init__(self, run_batch: Callable[[list[J]], None], workers: int, max_batch_size: int = 1,
                 max_queue_delay_s: float = 0.0, name: str = "inference") -> None:
        if workers < 1 or max_batch_size < 1 or max_queue_delay_s < 0:
            raise ValueError("workers and max_batch_size must be at least 1, max_queue_delay_s at least 0")
        self._run_batch = run_batch
        self._max_batch_size = max_batch_size
        self._max_queue_delay_s = max_queue_delay_s if max_batch_size > 1 else 0.0
        self._queue: deque[J] = deque()
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
                         for index in range(workers)]

    @property
    def queued(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job: J) -> None:
        with self._lock:
            self._queue.append(job)
            self._arrived.notify()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop taking requests; wait up to ``timeout_s`` for batches running now (a model call cannot be cut)."""
        with self._lock:
            self._stopped = True
            self._queue.clear()
            self._arrived.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(0.0, deadline - time.monotonic()))

    def _work(self) -> None:
        while True:
            batch = self._take()
            if batch is None:
                return
            if batch:
                self._run_batch(batch)

    def _take(self) -> "list[J] | None":
        """The next batch (possibly empty when every waiting request had expired); None once stopped."""
        with self._lock:
            queue = self._queue
            while not queue and not self._stopped:
                self._arrived.wait()
            if self._stopped:
                return None
            if self._max_queue_delay_s:
                closes_at = queue[0].received + self._max_queue_delay_s
                while len(queue) < self._max_batch_size and not self._stopped:
                    remaining = closes_at - time.monotonic()
                    if remaining <= 0 or not self._arrived.wait(remaining):
                        break
                    if not queue:
                        break
            batch: list[J] = []
            while queue and len(batch) < self._max_batch_size:
                job = queue.popleft()
                if not job.done:
                    batch.append(job)
            return batch
