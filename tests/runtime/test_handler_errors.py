"""Failures inside or around the handler: INFERENCE_FAILED, TIMEOUT, OVERLOADED, INTERNAL.

Each test checks the daemon goes on serving after the failure.
"""

from __future__ import annotations

import threading
import time

import pytest

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.schema import ErrorCode
from ai_model_container.daemon.container import ModelDaemon

from .helpers import RawConnection, request_dict, write_flat_frame

WIDTH, HEIGHT = 64, 48


@pytest.fixture
def frame(make_writer, camera_id):
    """(camera_id, frame_id) of one written frame."""
    return camera_id, write_flat_frame(make_writer(camera_id, WIDTH, HEIGHT))


@pytest.mark.parametrize("config, reason", [
    ({"fail": True}, "ValueError: the handler failed on purpose"),
    ({"invalid": True}, "invalid detections"),
], ids=["handler raises", "handler returns invalid detections"])
def test_handler_failure_is_inference_failed_and_the_next_request_is_served(shared_daemon, frame, config, reason):
    camera_id, frame_id = frame
    with shared_daemon.client() as client:
        response = client.infer(inference_request(shared_daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT, config))
        assert response.error_code is ErrorCode.INFERENCE_FAILED and reason in response.error
        assert (response.camera_id, response.frame_id, response.detections) == (camera_id, frame_id, [])
        again = client.infer(inference_request(shared_daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT))
        assert again.error_code is None and len(again.detections) == 1


def test_request_past_its_deadline_gets_timeout_and_the_connection_stays_usable(start_daemon, controlled_model, frame):
    camera_id, frame_id = frame
    daemon = start_daemon(controlled_model(limits={"timeout_ms": 300, "max_concurrent_requests": 2}))
    with RawConnection(daemon.socket) as connection:
        started = time.monotonic()
        connection.send_message(request_dict(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT, {"sleep_s": 1.2}))
        response = connection.read_response()
        elapsed = time.monotonic() - started
        assert response.error_code is ErrorCode.TIMEOUT and "300 ms" in response.error
        assert (response.camera_id, response.frame_id) == (camera_id, frame_id)
        assert 0.28 <= elapsed < 1.0, f"TIMEOUT after {elapsed:.3f}s for a 300 ms deadline"
        # The model still runs on one worker; the other serves the next request on the same connection.
        connection.send_message(request_dict(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT))
        assert connection.read_response().error_code is None
    time.sleep(1.0)  # the late result of the timed-out request arrives and must go nowhere
    with daemon.client() as client:
        assert client.health().ready
        stats = client.stats()
    assert stats.errors_by_code == {"TIMEOUT": 1} and stats.succeeded_total == 1 and stats.in_flight == 0


def test_request_finding_every_slot_busy_is_overloaded(start_daemon, controlled_model, make_gate, frame):
    camera_id, frame_id = frame
    daemon = start_daemon(controlled_model(limits={"max_concurrent_requests": 1, "queue_wait_ms": 50}))
    gate = make_gate()
    first = []

    def slow_request() -> None:
        with daemon.client() as client:
            first.append(client.infer(inference_request(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT, gate.config)))

    thread = threading.Thread(target=slow_request)
    thread.start()
    try:
        gate.wait_entered()
        with daemon.client() as client:
            started = time.monotonic()
            second = client.infer(inference_request(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT))
            waited = time.monotonic() - started
            assert client.health().in_flight == 1
    finally:
        gate.release()
        thread.join(10)
    assert second.error_code is ErrorCode.OVERLOADED and "1 workers" in second.error
    assert 0.045 <= waited < 1.0, f"refused after {waited:.3f}s, queue_wait_ms is 50"
    assert first[0].error_code is None
    with daemon.client() as client:
        assert client.infer(inference_request(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT)).error_code is None


def test_a_new_connection_past_the_limit_closes_the_longest_idle_one(start_daemon, controlled_model):
    daemon = start_daemon(controlled_model(limits={"max_connections": 2}))
    oldest, newer = RawConnection(daemon.socket), RawConnection(daemon.socket)
    try:
        for connection in (oldest, newer):
            connection.send_message({"op": "health"})
            assert connection.read_response().ready
        newer.send_message({"op": "health"})  # newer is now the more recently active one
        assert newer.read_response().ready
        with RawConnection(daemon.socket) as newcomer:
            newcomer.send_message({"op": "health"})
            assert newcomer.read_response().ready, "the newcomer is served"
            assert oldest.is_closed_by_peer(), "the longest-idle connection made room for it"
            newer.send_message({"op": "health"})
            assert newer.read_response().ready
    finally:
        oldest.close()
        newer.close()


def test_a_new_connection_is_refused_only_when_every_connection_is_busy(start_daemon, controlled_model, make_gate, frame):
    camera_id, frame_id = frame
    daemon = start_daemon(controlled_model(limits={"max_connections": 2, "max_concurrent_requests": 2}))
    gates = [make_gate(), make_gate()]
    busy = [RawConnection(daemon.socket), RawConnection(daemon.socket)]
    try:
        for connection, gate in zip(busy, gates):
            connection.send_message(request_dict(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT, gate.config))
        for gate in gates:
            gate.wait_entered()
        with RawConnection(daemon.socket) as refused:
            response = refused.read_response()
            assert response.error_code is ErrorCode.OVERLOADED and "too many connections" in response.error
            assert refused.is_closed_by_peer()
        for gate in gates:
            gate.release()
        for connection in busy:
            assert connection.read_response().error_code is None, "the busy connections were not disturbed"
    finally:
        for gate in gates:
            gate.release()
        for connection in busy:
            connection.close()
    with daemon.client() as client:
        assert client.stats().errors_by_code["OVERLOADED"] == 1


def test_a_bug_in_the_runtime_is_answered_internal(controlled_model, socket_dir, model_id):
    """INTERNAL is reserved for runtime bugs, which no request can trigger on purpose (every known
    path maps to a specific code), so this injects one: the health op of an in-process daemon raises.
    The connection gets INTERNAL and keeps working."""
    daemon = ModelDaemon(controlled_model(), socket_dir=str(socket_dir), model_id=model_id)
    server = daemon.start()
    try:
        def broken_health():
            raise RuntimeError("injected runtime bug")

        server.service.health = broken_health
        with RawConnection(server.socket_path) as connection:
            connection.send_message({"op": "health"})
            response = connection.read_response()
            assert response.error_code is ErrorCode.INTERNAL and "injected" not in response.error
            connection.send_message({"op": "describe"})
            assert connection.read_response().model_id == model_id
    finally:
        server.shutdown(1.0)
        daemon.handler.close()
    assert not server.socket_path.exists()
