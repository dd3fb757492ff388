"""Requests the daemon cannot accept: every one gets a well-formed error response, none takes it down."""

from __future__ import annotations

import json

import pytest

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.schema import ErrorCode, InferenceResponse
from ai_model_container.contract.wire import LENGTH_PREFIX
from ai_model_container.device import detect_gpu

from .helpers import RawConnection, request_dict, write_flat_frame

INVALID_BODIES = {
    "truncated JSON": b'{"op": "health"',
    "not JSON at all": b"health please",
    "empty body": b"",
    "invalid UTF-8": b'{"op": "\xff\xfe"}',
    "JSON array": b'[{"op": "health"}]',
    "JSON string": b'"health"',
    "JSON number": b"42",
    "JSON null": b"null",
    "unknown op": b'{"op": "reboot"}',
    "op of the wrong type": b'{"op": ["health"]}',
    "deeply nested JSON": b'{"op": "health", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}",
}


@pytest.mark.parametrize("body", INVALID_BODIES.values(), ids=INVALID_BODIES.keys())
def test_unparseable_requests_are_invalid_and_the_connection_stays_usable(shared_daemon, body):
    with RawConnection(shared_daemon.socket) as connection:
        connection.send_message(body)
        response = connection.read_response()
        assert isinstance(response, InferenceResponse)
        assert response.error_code is ErrorCode.INVALID_REQUEST and response.error
        assert response.model_id == shared_daemon.model_id and response.detections == []
        connection.send_message({"op": "health"})
        assert connection.read_response().ready


def _schema_violations(model_id: str) -> dict[str, tuple[dict, str]]:
    valid = request_dict(model_id, "cam1", 7, 640, 480)
    metadata = valid["frame_metadata"]
    without_metadata = {key: value for key, value in valid.items() if key != "frame_metadata"}
    return {
        "missing frame_metadata": (without_metadata, "frame_metadata"),
        "negative width": ({**valid, "frame_metadata": {**metadata, "width": -640}}, "frame_metadata.width"),
        "frame_id zero": ({**valid, "frame_metadata": {**metadata, "frame_id": 0}}, "frame_metadata.frame_id"),
        "pixel format": ({**valid, "frame_metadata": {**metadata, "pixel_format": "RGB"}}, "frame_metadata.pixel_format"),
        "camera_id with a slash": ({**valid, "camera_id": "../etc"}, "camera_id"),
        "reference not a string": ({**valid, "frame_reference": 12}, "frame_reference"),
        "reference too long": ({**valid, "frame_reference": "/dev/shm/" + "x" * 300}, "frame_reference"),
        "timestamp as text": ({**valid, "timestamp": "now"}, "timestamp"),
        "config not an object": ({**valid, "config": [1, 2]}, "config"),
    }


@pytest.mark.parametrize("case", list(_schema_violations("m")))
def test_schema_violations_name_the_field_and_echo_the_ids(shared_daemon, case):
    body, field = _schema_violations(shared_daemon.model_id)[case]
    with RawConnection(shared_daemon.socket) as connection:
        connection.send_message(body)
        response = connection.read_response()
    assert response.error_code is ErrorCode.INVALID_REQUEST
    assert field in response.error
    if isinstance(body.get("camera_id"), str) and body["camera_id"] == "cam1":
        assert response.camera_id == "cam1"
    if isinstance(body.get("frame_metadata"), dict) and body["frame_metadata"]["frame_id"] == 7:
        assert response.frame_id == 7


def test_request_for_another_model_is_invalid(shared_daemon, make_writer, camera_id):
    writer = make_writer(camera_id, 64, 48)
    frame_id = write_flat_frame(writer)
    with shared_daemon.client() as client:
        response = client.infer(inference_request("some_other_model", camera_id, frame_id, 64, 48))
        assert response.error_code is ErrorCode.INVALID_REQUEST
        assert "some_other_model" in response.error
        assert (response.camera_id, response.frame_id) == (camera_id, frame_id)
        assert client.infer(inference_request(shared_daemon.model_id, camera_id, frame_id, 64, 48)).error_code is None


@pytest.mark.parametrize("body", [
    {"op": "health", "protocol_version": 2},
    {"op": "stats", "protocol_version": 0},
    "inference",
])
def test_other_protocol_versions_are_refused(shared_daemon, body):
    if body == "inference":
        body = {**request_dict(shared_daemon.model_id, "cam1", 3, 64, 48), "protocol_version": 2}
    with RawConnection(shared_daemon.socket) as connection:
        connection.send_message(body)
        response = connection.read_response()
        assert response.error_code is ErrorCode.UNSUPPORTED_VERSION
        assert "protocol_version" in response.error
        connection.send_message({"op": "health", "protocol_version": 1, "from_the_future": True})
        assert connection.read_response().ready, "unknown fields must be ignored"


def test_length_over_the_limit_is_answered_then_closed(shared_daemon):
    with RawConnection(shared_daemon.socket) as connection:
        connection.send(LENGTH_PREFIX.pack((1 << 20) + 1) + b"{" * 100)
        response = connection.read_response()
        assert response.error_code is ErrorCode.MESSAGE_TOO_LARGE
        assert str((1 << 20) + 1) in response.error
        assert connection.is_closed_by_peer()
    with shared_daemon.client() as client:
        assert client.health().ready


def test_configured_message_limit_applies_to_real_requests(start_daemon, controlled_model, make_writer, camera_id):
    daemon = start_daemon(controlled_model(limits={"max_message_bytes": 1024}))
    writer = make_writer(camera_id, 64, 48)
    frame_id = write_flat_frame(writer)
    fits = request_dict(daemon.model_id, camera_id, frame_id, 64, 48, {"note": "x" * 500})
    too_big = request_dict(daemon.model_id, camera_id, frame_id, 64, 48, {"note": "x" * 1200})
    with RawConnection(daemon.socket) as connection:
        connection.send_message(fits)
        assert connection.read_response().error_code is None
        connection.send_message(too_big)
        assert connection.read_response().error_code is ErrorCode.MESSAGE_TOO_LARGE
        assert connection.is_closed_by_peer()


@pytest.mark.skipif(detect_gpu() is not None, reason="needs a host without a GPU")
def test_gpu_only_model_without_gpu_is_degraded_not_dead(start_daemon, controlled_model, make_writer, camera_id):
    daemon = start_daemon(controlled_model(resources={"device": "cuda", "cpu_fallback": False}))
    writer = make_writer(camera_id, 64, 48)
    frame_id = write_flat_frame(writer)
    with daemon.client() as client:
        health = client.health()
        assert (health.status.value, health.ready, health.device) == ("DEGRADED", False, "none")
        assert health.error_code is ErrorCode.MODEL_NOT_READY and "cpu_fallback" in health.error
        assert client.describe().device == "none"
        response = client.infer(inference_request(daemon.model_id, camera_id, frame_id, 64, 48))
        assert response.error_code is ErrorCode.MODEL_NOT_READY and "GPU" in response.error
        assert client.stats().errors_by_code == {"MODEL_NOT_READY": 1}
    assert "starts DEGRADED" in daemon.log


def test_stats_count_every_refusal(start_daemon, controlled_model):
    daemon = start_daemon(controlled_model())
    with RawConnection(daemon.socket) as connection:
        for body in (b"nope", b'{"op": "health", "protocol_version": 9}', json.dumps({"op": "x"}).encode()):
            connection.send_message(body)
            connection.read_response()
        connection.send_message({"op": "stats"})
        stats = connection.read_response()
    assert stats.errors_by_code == {"INVALID_REQUEST": 2, "UNSUPPORTED_VERSION": 1}
    assert stats.requests_total == 3 and stats.succeeded_total == 0
