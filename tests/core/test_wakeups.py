"""Wakeups, the one timer behind every camera's looks: never early, and late by at most COALESCE_S."""

from __future__ import annotations

import asyncio

import uvloop

from ruth_ai_core.cameras import COALESCE_S, Wakeups


def test_wakeups_always_fire_for_the_earliest_camera_waiting() -> None:
    """A camera that books a late look while another waits for an earlier one must not delay the other."""
    loop = uvloop.new_event_loop()
    fired: dict[str, float] = {}

    class Camera:
        def __init__(self, name: str, then: "tuple[Camera, float] | None" = None) -> None:
            self.name, self.then = name, then

        def look(self) -> None:
            fired[self.name] = loop.time()
            if self.then is not None:
                wakeups.at(loop.time() + self.then[1], self.then[0])

    wakeups = Wakeups(loop)
    waiting = Camera("waiting")
    late = Camera("late")
    start = loop.time()
    wakeups.at(start + 0.05, waiting)  # due in 50 ms
    wakeups.at(start, Camera("first", then=(late, 0.3)))  # fires now, books the late one 300 ms out
    loop.run_until_complete(asyncio.sleep(0.4))
    loop.close()
    assert fired["waiting"] - start < 0.1, "the camera due at 50 ms waited for the one booked at 300 ms"
    assert fired["late"] - start >= 0.29


def test_cameras_due_close_together_share_one_wake_up_and_none_looks_early() -> None:
    """Staggered cameras (one due every 0.2 ms) are looked at in groups, each after its time and within COALESCE_S."""
    loop = uvloop.new_event_loop()
    fires = 0

    class CountingWakeups(Wakeups):
        def _fire(self) -> None:
            nonlocal fires
            fires += 1
            super()._fire()

    looked: dict[int, float] = {}

    class Camera:
        def __init__(self, index: int) -> None:
            self.index = index

        def look(self) -> None:
            looked[self.index] = loop.time()

    wakeups = CountingWakeups(loop)
    start = loop.time() + 0.02
    due = {index: start + index * COALESCE_S / 10 for index in range(10)}
    for index, when in due.items():
        wakeups.at(when, Camera(index))
    loop.run_until_complete(asyncio.sleep(0.1))
    loop.close()
    assert sorted(looked) == list(range(10))
    assert all(looked[index] >= when for index, when in due.items()), "a camera looked before it was due"
    assert all(looked[index] - when < COALESCE_S + 0.02 for index, when in due.items())
    assert fires <= 2, f"{fires} wake-ups for 10 cameras due within {COALESCE_S * 1000:g} ms"
