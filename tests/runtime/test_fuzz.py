"""Property: whatever bytes arrive, the daemon answers with well-formed responses or closes cleanly,
and it still serves valid requests afterwards."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.schema import InferenceResponse
from ai_model_container.contract.wire import LENGTH_PREFIX, frame
from ruth_model_tools.frame_writer import synthetic_scene

from .helpers import RawConnection, parse_response, request_dict

WIDTH, HEIGHT = 320, 240
FUZZ_SETTINGS = settings(deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | st.floats() | st.text(max_size=12),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
request_keys = st.sampled_from([
    "op", "protocol_version", "frame_reference", "frame_metadata", "camera_id", "model_id", "timestamp", "config",
])
json_objects = st.dictionaries(request_keys | st.text(max_size=8), json_values, max_size=6)


@pytest.fixture
def ring(make_writer, camera_id):
    """A camera with one real frame, so mutated requests can reach the frame reader and the handler."""
    writer = make_writer(camera_id, WIDTH, HEIGHT)
    frame_id = writer.write_bgr(synthetic_scene(1, WIDTH, HEIGHT)[0])
    return camera_id, frame_id


def exchange(daemon, data: bytes) -> list:
    """Send ``data``, close the sending side, and parse every reply until the daemon closes."""
    replies = []
    with RawConnection(daemon.socket, timeout_s=10.0) as connection:
        try:
            connection.send(data)
            connection.finish_sending()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon already answered and closed (e.g. a length over the limit)
        while (body := connection.read_body()) is not None:
            replies.append(parse_response(body))
    return replies


def assert_refused(reply) -> None:
    """A reply to garbage: either a control-op answer or an inference response carrying an error code."""
    if isinstance(reply, InferenceResponse):
        assert reply.error_code is not None and reply.error


def assert_still_serves(daemon, camera_id, frame_id) -> None:
    with daemon.client() as client:
        response = client.infer(inference_request(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT))
        assert response.error_code is None and len(response.detections) == 2
        assert client.stats().requests_total > 0
    assert daemon.process.poll() is None


def test_random_bytes(module_daemon, ring):
    @settings(FUZZ_SETTINGS, max_examples=150)
    @given(st.binary(max_size=2048))
    def check(data: bytes) -> None:
        for reply in exchange(module_daemon, data):
            assert_refused(reply)

    check()
    assert_still_serves(module_daemon, *ring)


def test_random_bodies_behind_valid_length_prefixes(module_daemon, ring):
    @settings(FUZZ_SETTINGS, max_examples=150)
    @given(st.lists(st.binary(max_size=512), min_size=1, max_size=4), st.binary(max_size=8))
    def check(bodies: list[bytes], tail: bytes) -> None:
        replies = exchange(module_daemon, b"".join(frame(body) for body in bodies) + tail)
        assert len(replies) >= len(bodies), "every whole message gets an answer"
        for reply in replies:
            assert_refused(reply)

    check()
    assert_still_serves(module_daemon, *ring)


def test_random_json_objects(module_daemon, ring):
    @settings(FUZZ_SETTINGS, max_examples=200)
    @given(json_objects)
    def check(body: dict) -> None:
        replies = exchange(module_daemon, frame(json.dumps(body).encode()))
        assert len(replies) == 1
        assert_refused(replies[0])

    check()
    assert_still_serves(module_daemon, *ring)


def test_mutated_valid_requests(module_daemon, ring):
    camera_id, frame_id = ring
    valid = request_dict(module_daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT)

    @settings(FUZZ_SETTINGS, max_examples=200)
    @given(st.dictionaries(request_keys, json_values, max_size=3),
           st.dictionaries(st.sampled_from(["frame_id", "width", "height", "pixel_format", "timestamp_ns"]),
                           json_values, max_size=2),
           st.sets(request_keys, max_size=2))
    def check(replaced: dict, metadata: dict, removed: set) -> None:
        body = {**valid, **replaced}
        if metadata:
            body["frame_metadata"] = {**valid["frame_metadata"], **metadata}
        for key in removed:
            body.pop(key, None)
        replies = exchange(module_daemon, frame(json.dumps(body).encode()))
        assert len(replies) == 1
        reply = replies[0]
        if isinstance(reply, InferenceResponse) and reply.error_code is None:
            assert (reply.camera_id, reply.frame_id) == (camera_id, frame_id)

    check()
    assert_still_serves(module_daemon, camera_id, frame_id)


def test_length_prefix_over_the_limit_with_random_payload(module_daemon, ring):
    @settings(FUZZ_SETTINGS, max_examples=30)
    @given(st.integers((1 << 20) + 1, 2 ** 32 - 1), st.binary(max_size=256))
    def check(length: int, payload: bytes) -> None:
        replies = exchange(module_daemon, LENGTH_PREFIX.pack(length) + payload)
        assert [reply.error_code.value for reply in replies] == ["MESSAGE_TOO_LARGE"]

    check()
    assert_still_serves(module_daemon, *ring)
