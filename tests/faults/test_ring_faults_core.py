"""Issue 7, items 1, 2 and 3, Core side: ``ruth-ai run`` outlives whatever happens at a ring's path,
keeps serving the other cameras meanwhile, and resumes a camera as soon as a real ring is back.

Core reads rings only through the header and slot records (FrameReader.newest_frame), but a
truncated ring killed it with SIGBUS all the same, and an odd file killed the camera's agent.
"""

from __future__ import annotations

import os
import time

import pytest
from testkit import unique_id

from ai_model_container.contract.frame_reader import FrameReader
from ruth_model_tools.frame_writer import synthetic_scene

from .helpers import remove_path, ring_path, write_assignments

CORE_KINDS = [
    "fifo", "directory", "unix socket", "dangling symlink", "symlink loop", "sparse 1 PiB of zeros", "garbage",
    "header of a 2 TiB layout on a sparse file", "world-writable ring",
]


def test_polling_the_newest_frame_maps_no_ring(make_writer, camera_id):
    """What Core reads (FrameReader.newest_frame) goes through pread on the ring's descriptor, never a
    mapping, so no truncation can ever make Core touch a page past a file's end."""
    writer = make_writer(camera_id, 320, 240)
    writer.write_bgr(synthetic_scene(1, 320, 240)[0])
    reader = FrameReader()
    assert reader.newest_frame(camera_id).frame_id == 1
    with open("/proc/self/maps") as maps:
        mapped = [line for line in maps if ring_path(camera_id) in line]
    assert len(mapped) == 1, mapped  # the writer's own mapping, nothing of the reader's


@pytest.fixture
def fed_core(module_daemon, register, feeder, core_process, tmp_path):
    """``ruth-ai run`` with two fed cameras on the example model, polling every millisecond."""
    register(module_daemon)
    victim, bystander = unique_id("cam"), unique_id("cam")
    feeds = {victim: feeder(victim).start(), bystander: feeder(bystander).start()}
    assignments = tmp_path / "assignments.yaml"
    write_assignments(assignments, [{"camera": victim, "model": module_daemon.model_id, "fps": 25},
                                    {"camera": bystander, "model": module_daemon.model_id, "fps": 5}])
    core = core_process(assignments, daemons_dir=module_daemon.socket.parent, extra_args=["--poll-ms", "1"])
    for camera in feeds:
        core.wait_for_more_results(camera, module_daemon.model_id)
    return core, module_daemon.model_id, victim, bystander, feeds


@pytest.mark.slow
def test_core_outlives_a_ring_truncated_under_it(fed_core):
    """Eight rounds of: truncate the ring Core is polling, Core stays up, a new ring brings results back.
    With the 50 ms trust window the agent's next poll read past the end and Core died of SIGBUS, mostly
    in the first round. The truncation waits until no request of the camera is in flight, since a model
    reading the pixels at that moment would die of it (CONTRACT.md, "Truncation": the race left)."""
    core, model_id, victim, bystander, feeds = fed_core
    for size in (0, 4096) * 4:
        feeds[victim].pause()
        core.settle(victim, model_id)
        os.truncate(ring_path(victim), size)
        time.sleep(0.3)  # hundreds of polls against the truncated ring
        core.assert_serving()
        core.wait_for_more_results(bystander, model_id, more=1)
        feeds[victim].start()  # VAS recreates the ring
        core.wait_for_more_results(victim, model_id)
    assert core.stop() == 0, core.log[-3000:]


@pytest.mark.slow
def test_core_outlives_anything_at_a_ring_path_and_resumes_on_a_real_ring(fed_core, hostile_ring):
    """For each kind of thing at the victim's path: Core stays up and answers metrics, the bystander camera
    keeps getting results, and the victim's results resume once a real ring replaces the thing. An uncaught
    OSError used to kill the camera's agent for good (0 results after the real ring came back)."""
    core, model_id, victim, bystander, feeds = fed_core
    for kind in CORE_KINDS:
        feeds[victim].stop()
        hostile_ring(victim, kind)
        time.sleep(0.4)  # a few polls of the waiting agent
        core.assert_serving()
        core.wait_for_more_results(bystander, model_id, more=1)
        remove_path(ring_path(victim))
        feeds[victim].start()
        try:
            core.wait_for_more_results(victim, model_id, timeout_s=10)
        except AssertionError as exc:
            raise AssertionError(f"no results after a real ring replaced the {kind}: {exc}") from None
    assert core.stop() == 0, core.log[-3000:]
