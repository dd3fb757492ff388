"""Wakeups, the one timer behind every camera's looks: a camera is never woken later than it asked."""

from __future__ import annotations

import asyncio

import uvloop

from ruth_ai_core.cameras import Wakeups


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
