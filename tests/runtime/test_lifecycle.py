"""The daemon's process lifecycle: graceful shutdown, socket ownership, permissions."""

from __future__ import annotations

import os
import signal
import stat
import threading
import time

import pytest

from ai_model_container.contract.client import ModelUnavailable, inference_request
from ai_model_container.contract.paths import socket_path

from .helpers import RawConnection, luma_for, request_dict, write_flat_frame

WIDTH, HEIGHT = 64, 48


def lock_file(daemon):
    return daemon.socket.with_name(daemon.socket.name + ".lock")


def wait_until(condition, timeout_s: float = 10.0, message: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"{message} not reached within {timeout_s}s"
        time.sleep(0.01)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_drains_requests_in_flight_and_exits_cleanly(start_daemon, controlled_model, make_writer,
                                                            make_gate, camera_id, sig):
    daemon = start_daemon(controlled_model())
    frame_id = write_flat_frame(make_writer(camera_id, WIDTH, HEIGHT))
    gate = make_gate()
    answers = []

    def in_flight() -> None:
        with daemon.client() as client:
            answers.append(client.infer(inference_request(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT,
                                                          gate.config)))

    idle = RawConnection(daemon.socket)
    idle.send_message({"op": "health"})
    assert idle.read_response().ready
    request = threading.Thread(target=in_flight)
    request.start()
    try:
        gate.wait_entered()
        daemon.process.send_signal(sig)
        wait_until(lambda: not daemon.socket.exists(), message="socket removed")
        with pytest.raises(ModelUnavailable):
            with daemon.client(connect_timeout_s=0.5) as client:
                client.health()
        assert idle.is_closed_by_peer(), "an idle connection is closed when the daemon drains"
        assert daemon.process.poll() is None, "the daemon must wait for the request in flight"
    finally:
        gate.release()
        request.join(10)
        idle.close()
    (response,) = answers
    assert response.error_code is None and response.detections[0].attributes["mean_luma"] == luma_for(frame_id)
    assert daemon.process.wait(10) == 0
    assert not daemon.socket.exists() and not lock_file(daemon).exists()
    assert "draining" in daemon.log and "stopped" in daemon.log


def test_stale_socket_of_a_killed_daemon_is_replaced(start_daemon, controlled_model, model_id):
    model_dir = controlled_model()
    killed = start_daemon(model_dir, model_id=model_id)
    killed.stop(signal.SIGKILL)
    assert stat.S_ISSOCK(os.lstat(killed.socket).st_mode), "SIGKILL leaves the socket file behind"
    successor = start_daemon(model_dir, model_id=model_id)
    with successor.client() as client:
        assert client.health().ready
    assert "stale socket" in successor.log


def test_second_daemon_for_a_live_socket_refuses_to_start(start_daemon, spawn_daemon, controlled_model, model_id):
    model_dir = controlled_model()
    first = start_daemon(model_dir, model_id=model_id)
    second = spawn_daemon(model_dir, model_id=model_id)
    assert second.process.wait(20) == 3
    assert "cannot start" in second.log and "served by another live daemon" in second.log
    with first.client() as client:
        assert client.health().ready
    assert stat.S_ISSOCK(os.lstat(first.socket).st_mode) and lock_file(first).exists()


def test_file_that_is_not_a_socket_is_left_alone(spawn_daemon, controlled_model, socket_dir, model_id):
    path = socket_path(model_id, str(socket_dir))
    path.write_text("someone's data")
    daemon = spawn_daemon(controlled_model(), model_id=model_id)
    assert daemon.process.wait(20) == 3
    assert "is not a socket" in daemon.log
    assert path.read_text() == "someone's data"


def test_socket_is_owner_and_group_only(start_daemon, controlled_model):
    daemon = start_daemon(controlled_model())
    assert stat.S_IMODE(os.lstat(daemon.socket).st_mode) == 0o660
    assert stat.S_IMODE(os.lstat(lock_file(daemon)).st_mode) & 0o077 == 0


def test_request_outliving_the_drain_deadline_is_cut_off(start_daemon, controlled_model, make_writer,
                                                         make_gate, camera_id):
    """The daemon is started with --drain-timeout 5: a request still running then loses its connection."""
    daemon = start_daemon(controlled_model(limits={"timeout_ms": 60000}))  # no TIMEOUT answer before the cut
    frame_id = write_flat_frame(make_writer(camera_id, WIDTH, HEIGHT))
    gate = make_gate()
    with RawConnection(daemon.socket, timeout_s=15.0) as connection:
        connection.send_message(request_dict(daemon.model_id, camera_id, frame_id, WIDTH, HEIGHT, gate.config))
        gate.wait_entered()
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        try:
            assert connection.is_closed_by_peer(), "no answer is owed once the drain deadline passed"
            assert 4.5 <= time.monotonic() - started < 10.0
            assert daemon.process.wait(10) == 0
        finally:
            gate.release()
    assert "drain deadline" in daemon.log
    assert not daemon.socket.exists() and not lock_file(daemon).exists()
