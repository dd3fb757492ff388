"""Where inference requests wait for the model: one queue per daemon, drained in batches by workers.

Requests from every connection join one queue. ``workers`` threads
(``limits.max_concurrent_requests``) take them: one at a time when the model
does not batch, else up to ``max_batch_size`` at once, waiting at most
``max_queue_delay_s`` after the oldest request arrived for the batch to fill
(Triton's dynamic batcher closes a batch the same way). A request whose
deadline passed while it waited was already answered by the service and is
skipped, so it never takes room in a batch. The queue is a ``SimpleQueue``:
a hand-off costs a few microseconds, which is most of what a cheap model's
request costs; only its blocking and non-blocking gets are used (see
``_let_the_batch_fill`` for why not its timed one).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Callable, Generic, Optional, Protocol, TypeVar

FILL_CHECK_S = 0.0002
"""How often a worker waiting for its batch to fill looks at the queue."""


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
        self._max_queue_delay_s = max_queue_delay_s
        self._queue: "queue.SimpleQueue[Optional[J]]" = queue.SimpleQueue()
        self._stopped = False
        self._threads = [threading.Thread(target=self._work, name=f"{name}-{index}", daemon=True)
                         for index in range(workers)]

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def submit(self, job: J) -> None:
        self._queue.put(job)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop taking requests; wait up to ``timeout_s`` for batches running now (a model call cannot be cut)."""
        self._stopped = True
        for _ in self._threads:
            self._queue.put(None)
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

    def _take(self) -> Optional[list[J]]:
        """The next batch (empty when every request taken had expired); None once stopped."""
        first = self._queue.get()
        if first is None or self._stopped:
            return None
        batch = [] if first.done else [first]
        if self._max_batch_size > 1 and self._max_queue_delay_s > 0:
            self._let_the_batch_fill(first.received + self._max_queue_delay_s, self._max_batch_size - 1)
        while len(batch) < self._max_batch_size:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)  # a stop meant for this or another worker: pass it on
                break
            if not job.done:
                batch.append(job)
        return batch

    def _let_the_batch_fill(self, closes_at: float, wanted: int) -> None:
        """Wait until ``wanted`` more requests are queued or ``closes_at``, whichever comes first.

        Slept in short steps rather than with ``SimpleQueue.get(timeout=...)``: with several
        workers, a timed get that wakes for an item another worker takes, after its deadline,
        waits again with no timeout at all (CPython 3.11), until the next request arrives.
        """
        while self._queue.qsize() < wanted:
            remaining = closes_at - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, FILL_CHECK_S))
