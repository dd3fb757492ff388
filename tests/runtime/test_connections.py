"""Clients that misbehave at the connection level: half messages, stalls, vanishing mid-request."""

from __future__ import annotations

import time

import pytest

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.wire import LENGTH_PREFIX

from .helpers import RawConnection, request_dict, write_flat_frame

WIDTH, HEIGHT = 64, 48


def assert_serves(daemon, camera_id, frame_id):
    with daemon.client() as client:
        response = client.infer(inference_request(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT))
    assert response.error_code is None, response.error


@pytest.mark.parametrize("sent", ["half a prefix", "a prefix only", "half a body"])
def test_client_sending_part_of_a_message_then_leaving_does_no_harm(shared_daemon, make_writer, camera_id, sent):
    frame_id = write_flat_frame(make_writer(camera_id, WIDTH, HEIGHT))
    body = b'{"op": "health"}'
    data = {"half a prefix": LENGTH_PREFIX.pack(len(body))[:2],
            "a prefix only": LENGTH_PREFIX.pack(len(body)),
            "half a body": LENGTH_PREFIX.pack(len(body)) + body[:7]}[sent]
    for _ in range(20):
        with RawConnection(shared_daemon.socket) as connection:
            connection.send(data)
    assert_serves(shared_daemon, camera_id, frame_id)
    assert shared_daemon.process.poll() is None
    assert "Traceback" not in shared_daemon.log


def test_stalled_clients_do_not_hold_up_others(shared_daemon, make_writer, camera_id):
    frame_id = write_flat_frame(make_writer(camera_id, WIDTH, HEIGHT))
    body = b'{"op": "health"}'
    stalled = [RawConnection(shared_daemon.socket) for _ in range(8)]
    try:
        for index, connection in enumerate(stalled):
            connection.send(LENGTH_PREFIX.pack(len(body)) + body[: index % 3])  # a header, maybe a few bytes
        with shared_daemon.client() as client:
            for _ in range(20):
                started = time.monotonic()
                response = client.infer(inference_request(shared_daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT))
                assert response.error_code is None
                assert time.monotonic() - started < 2.0, "a stalled client held up the others"
        for index, connection in enumerate(stalled):  # the rest arrives late but within the body timeout
            connection.send(body[index % 3:])
            assert connection.read_response().ready
    finally:
        for connection in stalled:
            connection.close()


def test_client_leaving_while_its_request_runs_does_no_harm(shared_daemon, make_writer, camera_id):
    frame_id = write_flat_frame(make_writer(camera_id, WIDTH, HEIGHT))
    for _ in range(3):
        with RawConnection(shared_daemon.socket) as connection:
            connection.send_message(request_dict(shared_daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT,
                                                 {"sleep_s": 0.1}))
    time.sleep(0.4)  # let the three requests finish and fail to deliver their answers
    assert_serves(shared_daemon, camera_id, frame_id)
    with shared_daemon.client() as client:
        stats = client.stats()
    assert stats.in_flight == 0
