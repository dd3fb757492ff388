"""FPS gating on a fake clock: the gate only ever sees frame timestamps, so the test feeds them."""

import random

import pytest

from ruth_ai_core.fps import NS_PER_S, FpsGate


def selected_count(gate: FpsGate, source_fps: float, seconds: float, jitter_s: float = 0.0, seed: int = 1) -> int:
    rng = random.Random(seed)
    frames = int(source_fps * seconds)
    chosen = 0
    for index in range(frames):
        timestamp = index / source_fps + rng.uniform(-jitter_s, jitter_s)
        chosen += gate.offer(int((1000.0 + timestamp) * NS_PER_S))
    return chosen


@pytest.mark.parametrize(("source", "target"), [(30, 10), (25, 10), (25, 7), (10, 10), (30, 1), (60, 25)])
def test_selected_rate_matches_the_target_over_a_minute(source, target):
    chosen = selected_count(FpsGate(target), source, 60.0)
    assert abs(chosen - target * 60) <= 1, chosen


@pytest.mark.parametrize(("source", "target"), [(10, 10), (30, 10), (25, 5)])
def test_timestamp_jitter_does_not_cost_frames(source, target):
    # Up to 20% of the source interval of jitter either way.
    chosen = selected_count(FpsGate(target), source, 60.0, jitter_s=0.2 / source)
    assert abs(chosen - target * 60) <= 0.02 * target * 60, chosen


def test_a_target_above_the_source_rate_takes_every_frame():
    assert selected_count(FpsGate(50), 10, 10.0) == 100


def test_a_gap_re_anchors_instead_of_bursting():
    gate = FpsGate(5)  # 200 ms period
    base = 10 * NS_PER_S
    assert gate.offer(base)
    # The camera stalls for 3 s, then frames come at 25 fps again.
    after_gap = [base + 3 * NS_PER_S + k * NS_PER_S // 25 for k in range(25)]
    chosen = [t for t in after_gap if gate.offer(t)]
    assert len(chosen) in (5, 6)  # about one second at 5 fps, not a burst of the 15 "missed" frames
    assert all(b - a >= 0.15 * NS_PER_S for a, b in zip(chosen, chosen[1:]))


def test_the_same_frame_is_not_selected_twice():
    gate = FpsGate(10)
    assert gate.offer(NS_PER_S)
    assert not gate.offer(NS_PER_S)


def test_time_going_backwards_means_a_new_writer_and_restarts_the_grid():
    gate = FpsGate(1)
    assert gate.offer(100 * NS_PER_S)
    assert not gate.offer(100 * NS_PER_S + NS_PER_S // 2)
    assert gate.offer(5 * NS_PER_S)  # new writer, older clock: first frame is taken at once


def test_fps_must_be_positive():
    with pytest.raises(ValueError):
        FpsGate(0)

