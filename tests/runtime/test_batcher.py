"""The batcher under cameras in step: every request is taken within its queue delay, whatever the timing.

In step (every client sends its next request once every client's last one is answered) is
what cameras of one rate do, and it is where a lost wake-up shows: once a worker sits on a
request, nothing else arrives to end its wait.
"""

from __future__ import annotations

import threading
import time

from ai_model_container.daemon.batcher import Batcher

CLIENTS = 8
SECONDS = 3.0
QUEUE_DELAY_S = 0.002


class Job:
    def __init__(self) -> None:
        self.received = time.monotonic()
        self.done = False
        self.answered = threading.Event()


def test_clients_in_step_are_never_left_waiting_for_a_worker() -> None:
    waits: list[float] = []

    def run_batch(jobs: list[Job]) -> None:
        now = time.monotonic()
        waits.extend(now - job.received for job in jobs)
        busy_until = now + 0.001
        while time.monotonic() < busy_until:
            pass  # a model step that holds the GIL, as Python pre- and postprocessing does
        for job in jobs:
            job.answered.set()

    batcher: Batcher[Job] = Batcher(run_batch, workers=2, max_batch_size=4, max_queue_delay_s=QUEUE_DELAY_S)
    batcher.start()
    stalls: list[float] = []
    stop_at = time.monotonic() + SECONDS
    in_step = threading.Barrier(CLIENTS)

    def client() -> None:
        while True:
            try:
                in_step.wait(2.0)
            except threading.BrokenBarrierError:
                return
            if time.monotonic() >= stop_at:
                return
            job = Job()
            batcher.submit(job)
            if not job.answered.wait(1.0):
                stalls.append(time.monotonic() - job.received)
                in_step.abort()
                return

    clients = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in clients:
        thread.start()
    for thread in clients:
        thread.join(SECONDS + 5)
    batcher.stop()
    assert not stalls, f"{len(stalls)} requests waited over a second for a worker"
    assert len(waits) > 500
    assert max(waits) < 0.25, f"a request waited {max(waits):.3f} s to be taken (queue delay {QUEUE_DELAY_S} s)"


def test_a_batch_closes_early_once_it_is_full() -> None:
    taken: list[int] = []
    done = threading.Event()

    def run_batch(jobs: list[Job]) -> None:
        taken.append(len(jobs))
        done.set()

    batcher: Batcher[Job] = Batcher(run_batch, workers=1, max_batch_size=4, max_queue_delay_s=5.0)
    started = time.monotonic()
    for _ in range(4):
        batcher.submit(Job())
    batcher.start()
    assert done.wait(2.0), "a full batch must not wait for its 5 s queue delay"
    assert taken == [4] and time.monotonic() - started < 1.0
    batcher.stop()
