"""Frames that cannot be served: missing, expired (also mid-read), invalid; each with its own error code."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.frame_reader import DEFAULT_REVALIDATE_S
from ai_model_container.contract.schema import ErrorCode
from ai_model_container.contract.shm_layout import SegmentHeader, SlotRecord

from .helpers import RawConnection, luma_for, request_dict, write_flat_frame

WIDTH, HEIGHT = 64, 48


def infer(daemon, camera_id, frame_id, width=WIDTH, height=HEIGHT, config=None):
    with daemon.client() as client:
        return client.infer(inference_request(daemon.model_id, camera_id, frame_id, width, height, config))


# -- FRAME_NOT_FOUND ------------------------------------------------------------------------


def test_camera_without_a_segment_is_not_found(shared_daemon, camera_id):
    response = infer(shared_daemon, camera_id, 1)
    assert response.error_code is ErrorCode.FRAME_NOT_FOUND and camera_id in response.error
    assert (response.camera_id, response.frame_id) == (camera_id, 1)


def test_frame_newer_than_the_last_written_is_not_found(shared_daemon, make_writer, camera_id):
    writer = make_writer(camera_id, WIDTH, HEIGHT)
    assert infer(shared_daemon, camera_id, 1).error_code is ErrorCode.FRAME_NOT_FOUND, "empty ring"
    newest = write_flat_frame(writer)
    response = infer(shared_daemon, camera_id, newest + 1)
    assert response.error_code is ErrorCode.FRAME_NOT_FOUND and "not written yet" in response.error
    assert infer(shared_daemon, camera_id, newest).error_code is None


def test_segment_removed_after_use_is_not_found(shared_daemon, make_writer, camera_id):
    writer = make_writer(camera_id, WIDTH, HEIGHT)
    frame_id = write_flat_frame(writer)
    assert infer(shared_daemon, camera_id, frame_id).error_code is None
    writer.close()
    time.sleep(DEFAULT_REVALIDATE_S * 2)  # a mapping is trusted this long without a stat (CONTRACT.md)
    assert infer(shared_daemon, camera_id, frame_id).error_code is ErrorCode.FRAME_NOT_FOUND


def test_segment_replaced_is_noticed_by_the_first_request_that_fails_on_the_old_one(shared_daemon, make_writer,
                                                                                   camera_id):
    writer = make_writer(camera_id, WIDTH, HEIGHT)
    for _ in range(5):
        write_flat_frame(writer)
    assert infer(shared_daemon, camera_id, 5).error_code is None
    replacement = make_writer(camera_id, WIDTH, HEIGHT)  # VAS restarted the camera: frame ids start again
    frame_id = write_flat_frame(replacement)
    assert infer(shared_daemon, camera_id, frame_id).error_code is None


# -- FRAME_EXPIRED --------------------------------------------------------------------------


def test_frame_overwritten_before_the_read_is_expired(shared_daemon, make_writer, camera_id):
    writer = make_writer(camera_id, WIDTH, HEIGHT, slot_count=2)
    for _ in range(3):
        write_flat_frame(writer)
    response = infer(shared_daemon, camera_id, 1)
    assert response.error_code is ErrorCode.FRAME_EXPIRED and "overwritten" in response.error
    assert infer(shared_daemon, camera_id, 2).error_code is None


@pytest.mark.parametrize("overwrite", [True, False], ids=["slot rewritten", "other slot written"])
def test_writer_rewriting_the_slot_during_the_read_expires_the_frame(shared_daemon, make_writer, make_gate,
                                                                       camera_id, overwrite):
    """The handler holds the frame view open (gate) while the writer publishes more frames."""
    writer = make_writer(camera_id, WIDTH, HEIGHT, slot_count=2)
    frame_id = write_flat_frame(writer)
    gate = make_gate()
    answer = []
    request = threading.Thread(target=lambda: answer.append(infer(shared_daemon, camera_id, frame_id, config=gate.config)))
    request.start()
    try:
        gate.wait_entered()
        write_flat_frame(writer)  # frame 2, slot 1
        if overwrite:
            write_flat_frame(writer)  # frame 3 reuses slot 0 while frame 1 is being read
    finally:
        gate.release()
        request.join(10)
    (response,) = answer
    if overwrite:
        assert response.error_code is ErrorCode.FRAME_EXPIRED and "during the read" in response.error
        assert response.detections == []
    else:
        assert response.error_code is None
        assert response.detections[0].attributes["mean_luma"] == luma_for(frame_id)


# -- FRAME_INVALID --------------------------------------------------------------------------


def _segment(header: SegmentHeader, record: SlotRecord, size: int) -> bytes:
    """A one-frame ring laid out by hand (header, slot 0's record, Y plane of luma 77), cut to ``size`` bytes."""
    content = bytearray(_GOOD.total_size)
    header.pack_into(content)
    record.pack_into(content, header.record_offset(0))
    start = _GOOD.data_offset
    content[start:start + WIDTH * HEIGHT] = bytes([77]) * (WIDTH * HEIGHT)
    return bytes(content[:size])


_GOOD = dataclasses.replace(SegmentHeader.plan(WIDTH, HEIGHT, 2), last_frame_id=1)
_RECORD = SlotRecord(seq=2, frame_id=1, timestamp_ns=5, width=WIDTH, height=HEIGHT, stride=WIDTH, pixel_format=1)

HAND_CRAFTED = {
    "magic": ({"magic": b"NOTVAS01"}, {}, None, "magic"),
    "layout version": ({"version": 2}, {}, None, "version"),
    "header size": ({"header_size": 128}, {}, None, "header_size"),
    "slot meta size": ({"slot_meta_size": 32}, {}, None, "slot_meta_size"),
    "pixel format": ({"pixel_format": 2}, {}, None, "pixel_format"),
    "no slots": ({"slot_count": 0}, {}, None, "slot_count"),
    "odd width": ({"width": WIDTH - 1}, {}, None, "even"),
    "stride below width": ({"stride": WIDTH - 2}, {}, None, "stride"),
    "slot too small": ({"slot_size": 100}, {}, None, "slot_size"),
    "unaligned data": ({"data_offset": 4100}, {}, None, "data_offset"),
    "data over the slot table": ({"data_offset": 0}, {}, None, "data_offset"),
    "segment shorter than the layout": ({}, {}, _GOOD.total_size // 2, "bytes"),
    "segment shorter than a header": ({}, {}, 40, "bytes"),
    "empty segment": ({}, {}, 0, "empty"),
    "slot record disagrees with the header": ({}, {"width": WIDTH * 2}, None, "disagrees"),
}


def test_hand_crafted_segment_is_served_when_valid(shared_daemon, make_segment, camera_id):
    """The control case: the hand-built layout itself is right, so the cases below fail for their one field."""
    make_segment(camera_id, _segment(_GOOD, _RECORD, _GOOD.total_size))
    response = infer(shared_daemon, camera_id, 1)
    assert response.error_code is None, response.error
    assert response.detections[0].attributes["mean_luma"] == 77.0
    assert response.metadata["frame_timestamp_ns"] == 5


@pytest.mark.parametrize("case", HAND_CRAFTED.values(), ids=HAND_CRAFTED.keys())
def test_hand_crafted_bad_segment_is_invalid(shared_daemon, make_segment, camera_id, case):
    header_fields, record_fields, size, reason = case
    header = dataclasses.replace(_GOOD, **header_fields)
    record = _RECORD._replace(**record_fields)
    make_segment(camera_id, _segment(header, record, _GOOD.total_size if size is None else size))
    response = infer(shared_daemon, camera_id, 1)
    assert response.error_code is ErrorCode.FRAME_INVALID, response.error
    assert reason in response.error
    with shared_daemon.client() as client:
        assert client.health().ready


def test_dimensions_disagreeing_with_the_request_are_invalid(shared_daemon, make_writer, camera_id):
    writer = make_writer(camera_id, WIDTH, HEIGHT)
    frame_id = write_flat_frame(writer)
    response = infer(shared_daemon, camera_id, frame_id, WIDTH * 2, HEIGHT)
    assert response.error_code is ErrorCode.FRAME_INVALID
    assert f"{WIDTH}x{HEIGHT}" in response.error and f"{WIDTH * 2}x{HEIGHT}" in response.error


@pytest.mark.parametrize("reference", [
    "/etc/passwd", "/dev/shm/vas_frames_{other}", "/dev/shm/../shm/vas_frames_{camera}", "vas_frames_{camera}",
])
def test_frame_reference_other_than_the_cameras_ring_is_invalid(shared_daemon, make_writer, camera_id, reference):
    writer = make_writer(camera_id, WIDTH, HEIGHT)
    make_writer(camera_id + "x", WIDTH, HEIGHT)  # a real ring under the other name, which must still be refused
    frame_id = write_flat_frame(writer)
    body = request_dict(shared_daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT)
    body["frame_reference"] = reference.format(camera=camera_id, other=camera_id + "x")
    with RawConnection(shared_daemon.socket) as connection:
        connection.send_message(body)
        response = connection.read_response()
    assert response.error_code is ErrorCode.FRAME_INVALID and "frame_reference" in response.error
