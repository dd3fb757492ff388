"""Round trips through a daemon subprocess: one request, many on one connection, many clients at once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from ai_model_container import __version__
from ai_model_container.contract.client import inference_request

from .helpers import RawConnection, luma_for, request_dict, write_flat_frame


def test_inference_reads_the_requested_frame(start_daemon, controlled_model, make_writer, camera_id):
    daemon = start_daemon(controlled_model())
    writer = make_writer(camera_id, 320, 240, slot_count=4)
    frame_ids = [write_flat_frame(writer) for _ in range(3)]
    with daemon.client() as client:
        for frame_id in frame_ids:
            response = client.infer(inference_request(daemon.model_id, camera_id, frame_id, 320, 240))
            assert response.error_code is None, response.error
            assert (response.model_id, response.camera_id, response.frame_id) == (daemon.model_id, camera_id, frame_id)
            assert response.detections[0].attributes == {"mean_luma": float(luma_for(frame_id))}
            assert response.detections[0].bbox == (0.0, 0.0, 320.0, 240.0)
            assert response.metadata["width"] == 320 and response.metadata["height"] == 240
            assert response.metadata["device"] == "cpu"
            assert response.metadata["server_ms"] > 0


def test_pipelined_requests_on_one_connection_are_answered_in_order(start_daemon, controlled_model, make_writer):
    """200 requests written back to back before reading: one response each, in request order."""
    daemon = start_daemon(controlled_model())
    cameras = [make_writer(f"{daemon.model_id}_c{k}", 64, 48, slot_count=64) for k in range(2)]
    frames = {writer.camera_id: [write_flat_frame(writer, salt=k) for _ in range(50)] for k, writer in enumerate(cameras)}
    sent = []
    with RawConnection(daemon.socket) as connection:
        for batch in range(2):
            for index in range(50):
                for salt, writer in enumerate(cameras):
                    frame_id = frames[writer.camera_id][index]
                    body = request_dict(daemon.model_id, writer.camera_id, frame_id, 64, 48)
                    if index % 10 == 3:
                        body = {"op": "health"}
                    connection.send_message(body)
                    sent.append((body, salt))
            for body, salt in sent[batch * 100:]:
                response = connection.read_response()
                if body.get("op") == "health":
                    assert response.op == "health" and response.ready
                    continue
                frame_id = body["frame_metadata"]["frame_id"]
                assert response.error_code is None, response.error
                assert (response.camera_id, response.frame_id) == (body["camera_id"], frame_id)
                assert response.detections[0].attributes["mean_luma"] == luma_for(frame_id, salt)


def test_concurrent_clients_on_many_cameras_all_get_their_own_answers(start_daemon, controlled_model, make_writer):
    """Eight threads, each with its own connection and camera ring, writing and asking at once."""
    daemon = start_daemon(controlled_model(limits={"max_concurrent_requests": 8, "queue_wait_ms": 5000}))
    writers = [make_writer(f"{daemon.model_id}_cam{k}", 160, 120, slot_count=4) for k in range(8)]
    start = threading.Barrier(len(writers))

    def run(salt: int) -> int:
        writer = writers[salt]
        checked = 0
        with daemon.client() as client:
            start.wait()
            for _ in range(30):
                frame_id = write_flat_frame(writer, salt)
                response = client.infer(inference_request(daemon.model_id, writer.camera_id, frame_id, 160, 120))
                assert response.error_code is None, response.error
                assert (response.camera_id, response.frame_id) == (writer.camera_id, frame_id)
                assert response.detections[0].attributes["mean_luma"] == luma_for(frame_id, salt)
                checked += 1
        return checked

    with ThreadPoolExecutor(len(writers)) as pool:
        assert sum(pool.map(run, range(len(writers)))) == 240
    with daemon.client() as client:
        stats = client.stats()
    assert stats.requests_total == 240 and stats.succeeded_total == 240 and stats.errors_by_code == {}
    assert stats.latency.count == 240 and stats.in_flight == 0


def test_control_ops_describe_the_daemon(example_daemon, make_writer, camera_id):
    with example_daemon.client() as client:
        health = client.health()
        assert (health.status.value, health.ready, health.device, health.error_code) == ("READY", True, "cpu", None)
        describe = client.describe()
        assert describe.model_id == example_daemon.model_id
        assert describe.model["model_name"] == "Bright region detector"
        assert describe.runtime_version == __version__
        assert describe.device == "cpu" and describe.limits["timeout_ms"] == 2000
        client.infer(inference_request(example_daemon.model_id, camera_id, 1, 1280, 720))
        stats = client.stats()
    assert stats.requests_total == 1 and stats.succeeded_total == 0
    assert stats.errors_by_code == {"FRAME_NOT_FOUND": 1}
