"""person_pose on its own: views map back to frame pixels, and merging keeps one person per body."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from person_pose import (  # noqa: E402
    KEYPOINTS,
    Person,
    View,
    best_input,
    box_overlaps,
    decode_people,
    detect_people,
    keypoint_similarity,
    merge_people,
    plan_views,
    prepare_view,
)


def frame_with_marker(width=640, height=480, at=(100, 300)):
    """A black RGB frame with one white pixel block whose frame position we know."""
    frame = np.zeros((height, width, 3), np.uint8)
    x, y = at
    frame[y - 2:y + 3, x - 2:x + 3] = 255
    return frame


@pytest.mark.parametrize("rotation", [0, 90, 270])
@pytest.mark.parametrize("crop", [(0, 0, 1, 1), (0.1, 0.2, 0.7, 0.9)])
def test_a_point_in_a_view_maps_back_to_where_it_is_in_the_frame(rotation, crop):
    view = View(*crop, 224, 160, rotation=rotation)
    image, geometry = prepare_view(frame_with_marker(), view)
    assert image.shape == (160, 224, 3)
    ys, xs = np.nonzero(image[..., 0] > 60)
    x, y = geometry.to_frame(np.array([xs.mean() + 0.5]), np.array([ys.mean() + 0.5]))
    assert (float(x[0]), float(y[0])) == (pytest.approx(100.5, abs=2.5), pytest.approx(300.5, abs=2.5))


def test_a_smaller_view_made_from_the_downscaled_frame_looks_the_same():
    photo = cv2.imread(str(Path(__file__).resolve().parents[3] / "tests" / "real_models" / "photos" / "basketball.jpg"))
    frame = cv2.resize(photo, (768, 576))
    big, geometry = prepare_view(frame, View(0, 0, 1, 1, 448, 320))
    assert (geometry.pad_x, geometry.pad_y, geometry.scale) == (10, 0, pytest.approx(427 / 768))
    smaller = big[:, 10:10 + 427]
    direct, _ = prepare_view(frame, View(0, 0, 1, 1, 128, 160, rotation=90))
    reused, _ = prepare_view(frame, View(0, 0, 1, 1, 128, 160, rotation=90), smaller)
    assert np.abs(direct.astype(int) - reused.astype(int)).mean() < 4


def test_views_must_be_movenet_sized_crops():
    with pytest.raises(ValueError):
        View(0, 0, 1, 1, 100, 160)
    with pytest.raises(ValueError):
        View(0, 0, 1, 1, 128, 160, rotation=45)
    with pytest.raises(ValueError):
        View(0.5, 0, 0.4, 1, 128, 160)


def movenet_row(box, score, keypoints_yx=None):
    """One MoveNet output row: 17 x (y, x, score), y_min, x_min, y_max, x_max, score; all in 0..1."""
    row = np.zeros(56, np.float32)
    if keypoints_yx is not None:
        row[:51].reshape(KEYPOINTS, 3)[:] = keypoints_yx
    row[51:55] = box
    row[55] = score
    return row


def test_decoding_keeps_people_above_the_score_and_maps_their_boxes():
    frame = np.zeros((480, 640, 3), np.uint8)
    view = View(0, 0, 1, 1, 256, 192)  # same aspect: no padding, scale 0.4
    _, geometry = prepare_view(frame, view)
    rows = np.stack([movenet_row((0.25, 0.5, 0.75, 0.75), 0.6), movenet_row((0, 0, 0.1, 0.1), 0.05)])
    (person,) = decode_people(rows, geometry, 256, 192, min_score=0.1)
    assert person.box == pytest.approx((320, 120, 480, 360), abs=1e-3)
    assert person.score == pytest.approx(0.6)


def person(box, score, keypoints=None):
    return Person(tuple(map(float, box)), score, np.zeros((KEYPOINTS, 3)) if keypoints is None else keypoints)


def skeleton_in(box, score=0.9):
    """17 keypoints spread over a box, top (head) to bottom (ankles)."""
    x_min, y_min, x_max, y_max = box
    ys = np.linspace(y_min, y_max, KEYPOINTS)
    xs = np.where(np.arange(KEYPOINTS) % 2, x_min + 0.3 * (x_max - x_min), x_min + 0.7 * (x_max - x_min))
    return np.column_stack([xs, ys, np.full(KEYPOINTS, score)])


def test_merging_drops_the_same_body_seen_twice_and_keeps_two_bodies_one_behind_the_other():
    whole = person((100, 100, 160, 300), 0.8, skeleton_in((100, 100, 160, 300)))
    again = person((102, 98, 163, 305), 0.5, skeleton_in((102, 98, 163, 305)))
    upper_half = person((100, 100, 160, 200), 0.4, skeleton_in((100, 100, 160, 300)))  # a crop's cut-off view
    behind = person((105, 90, 150, 220), 0.3, skeleton_in((105, 90, 150, 220)))  # another body, mostly covered
    elsewhere = person((400, 100, 460, 300), 0.2)
    kept = merge_people([again, whole, upper_half, behind, elsewhere])
    assert [p.score for p in kept] == [0.8, 0.3, 0.2]
    assert kept[0].votes == 3


def test_overlaps_and_keypoint_similarity():
    assert box_overlaps((0, 0, 10, 10), (5, 0, 15, 10)) == (pytest.approx(1 / 3), pytest.approx(0.5))
    assert box_overlaps((0, 0, 10, 10), (2, 2, 4, 4)) == (pytest.approx(0.04), pytest.approx(1.0))
    a = person((0, 0, 50, 100), 0.9, skeleton_in((0, 0, 50, 100)))
    assert keypoint_similarity(a, a) == pytest.approx(1.0)
    assert keypoint_similarity(a, person((0, 0, 50, 100), 0.9, skeleton_in((60, 0, 110, 100)))) < 0.01
    assert keypoint_similarity(a, person((0, 0, 50, 100), 0.9)) == 0.0  # no keypoint seen by both


def test_detect_people_runs_every_view_and_merges_what_they_find():
    seen = []

    def fake_movenet(image):
        seen.append(image.shape)
        rows = np.zeros((12, 56), np.float32)
        rows[0] = movenet_row((0.2, 0.2, 0.8, 0.4), 0.7)  # the same spot of every input
        return rows

    frame = np.zeros((480, 640, 3), np.uint8)
    views = [View(0, 0, 1, 1, 256, 192), View(0, 0, 1, 1, 128, 160, rotation=90)]
    people = detect_people(frame, views, fake_movenet, 0.1)
    assert sorted(seen) == [(160, 128, 3), (192, 256, 3)]
    assert len(people) == 2  # the upright and the turned view saw different places of the frame
    assert {p.rotation for p in people} == {0, 90}
    assert all(0 <= v <= 640 for p in people for v in p.box[::2]) and all(0 <= v <= 480 for p in people for v in p.box[1::2])


@pytest.mark.parametrize("width, height", [(768, 576), (1280, 720), (480, 640), (512, 512), (1920, 1080)])
def test_views_are_planned_within_their_pixel_budget_and_shaped_like_the_frame(width, height):
    upright, clockwise, counter = plan_views(width, height, 448 * 320, 96 * 128)
    assert upright.pixels <= 448 * 320 and clockwise.pixels <= 96 * 128
    assert (clockwise.rotation, counter.rotation) == (90, 270)
    assert (clockwise.input_width, clockwise.input_height) == (counter.input_width, counter.input_height)
    portrait = height > width
    assert (upright.input_height > upright.input_width) == portrait
    # No other size within the budget shows the frame larger.
    scale = min(upright.input_width / width, upright.input_height / height)
    for other_width in range(32, 448 * 320 // 32 + 1, 32):
        other_height = (448 * 320 // other_width) // 32 * 32
        assert min(other_width / width, other_height / height) <= scale + 1e-9


def test_a_street_camera_frame_gets_the_planned_sizes():
    assert [(v.input_width, v.input_height) for v in plan_views(768, 576, 448 * 320, 96 * 128)] == [
        (448, 320), (96, 128), (96, 128)]
    assert best_input(1280, 720, 448 * 320) == (480, 288)
