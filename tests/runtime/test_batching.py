"""Dynamic batching: requests from several connections run as one model call, each keeping its own fate."""

from __future__ import annotations

import textwrap
import time

import yaml

from ai_model_container.contract.schema import ErrorCode

from .helpers import RawConnection, luma_for, request_dict, write_flat_frame

WIDTH, HEIGHT = 64, 48

BATCH_HANDLER = textwrap.dedent('''
    """Reports the size of the model call each request ran in; a 'poison' input makes a batch call raise."""
    import time

    from ai_model_container import Detection, InferenceHandler


    class OutOfMemoryError(RuntimeError):
        """What torch.cuda raises when a batch does not fit on the card."""


    class Handler(InferenceHandler):
        def preprocess(self, frame, request):
            return {"luma": float(frame.y.mean()), "options": dict(request.config)}

        def infer_batch(self, inputs):
            if any(one["options"].get("poison") for one in inputs):
                raise ValueError("the model cannot take a poisoned input")
            if len(inputs) > 1 and any(one["options"].get("big") for one in inputs):
                raise OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
            time.sleep(0.05)  # one model call costs the same for 1 or 32 inputs
            return [{"luma": one["luma"], "batch": len(inputs)} for one in inputs]

        def postprocess(self, outputs, inputs, frame, request):
            return [Detection(class_id=0, class_name="thing", confidence=1.0, bbox=(0.0, 0.0, 1.0, 1.0),
                              attributes={"luma": outputs["luma"], "batch": outputs["batch"]})]
''')


def batching_model(directory, max_batch_size=8, max_queue_delay_us=200_000, **limits):
    directory.mkdir(parents=True)
    (directory / "batch_handler.py").write_text(BATCH_HANDLER)
    (directory / "model.yaml").write_text(yaml.safe_dump({
        "model_id": "batched", "model_name": "Batched test model", "model_version": "0.1.0",
        "supported_tasks": ["detection"], "output_schema": {"classes": ["thing"]},
        "entry_point": "batch_handler:Handler", "resources": {"device": "cpu"},
        "limits": {"max_concurrent_requests": 1, "queue_wait_ms": 5000, **limits},
        "batching": {"max_batch_size": max_batch_size, "max_queue_delay_us": max_queue_delay_us},
    }))
    return directory


def pipeline(connection, bodies):
    for body in bodies:
        connection.send_message(body)
    return [connection.read_response() for _ in bodies]


def test_requests_from_several_connections_run_as_one_model_call(start_daemon, make_writer, tmp_path):
    daemon = start_daemon(batching_model(tmp_path / "model"))
    writer = make_writer(f"{daemon.model_id}_cam", WIDTH, HEIGHT, slot_count=16)
    frame_ids = [write_flat_frame(writer) for _ in range(8)]
    connections = [RawConnection(daemon.socket) for _ in range(2)]
    try:
        started = time.monotonic()
        for index, frame_id in enumerate(frame_ids):
            connections[index % 2].send_message(request_dict(daemon.model_id, writer.camera_id, frame_id, WIDTH, HEIGHT))
        answers = {}
        for index, frame_id in enumerate(frame_ids):
            answers[frame_id] = connections[index % 2].read_response()
        elapsed = time.monotonic() - started
    finally:
        for connection in connections:
            connection.close()
    for frame_id, response in answers.items():
        assert response.error_code is None, response.error
        assert response.frame_id == frame_id
        assert response.detections[0].attributes["luma"] == luma_for(frame_id)
    assert {response.detections[0].attributes["batch"] for response in answers.values()} == {8}
    assert elapsed < 0.05 * 8, f"8 requests took {elapsed:.2f}s: they did not share a model call"


def test_a_batch_closes_after_the_queue_delay_when_it_does_not_fill(start_daemon, make_writer, tmp_path):
    daemon = start_daemon(batching_model(tmp_path / "model", max_batch_size=32, max_queue_delay_us=100_000))
    writer = make_writer(f"{daemon.model_id}_cam", WIDTH, HEIGHT)
    frame_id = write_flat_frame(writer)
    with RawConnection(daemon.socket) as connection:
        started = time.monotonic()
        (response,) = pipeline(connection, [request_dict(daemon.model_id, writer.camera_id, frame_id, WIDTH, HEIGHT)])
        elapsed = time.monotonic() - started
    assert response.error_code is None and response.detections[0].attributes["batch"] == 1
    assert 0.09 <= elapsed < 1.0, f"a lone request waited {elapsed:.3f}s for a 100 ms queue delay"


def test_one_bad_input_or_frame_fails_alone_and_its_batch_mates_are_answered(start_daemon, make_writer, tmp_path):
    daemon = start_daemon(batching_model(tmp_path / "model"))
    writer = make_writer(f"{daemon.model_id}_cam", WIDTH, HEIGHT, slot_count=16)
    frame_ids = [write_flat_frame(writer) for _ in range(6)]
    bodies = [request_dict(daemon.model_id, writer.camera_id, frame_id, WIDTH, HEIGHT) for frame_id in frame_ids]
    bodies[1]["config"] = {"poison": True}
    bodies[3]["frame_metadata"]["frame_id"] = 999  # not written yet: FRAME_NOT_FOUND for this one only
    bodies[4]["frame_metadata"]["width"] = WIDTH * 2  # disagrees with the ring: FRAME_INVALID
    with RawConnection(daemon.socket) as connection:
        responses = pipeline(connection, bodies)
    codes = [response.error_code for response in responses]
    assert codes == [None, ErrorCode.INFERENCE_FAILED, None, ErrorCode.FRAME_NOT_FOUND, ErrorCode.FRAME_INVALID, None]
    assert "poisoned" in responses[1].error
    for index in (0, 2, 5):
        assert responses[index].detections[0].attributes["luma"] == luma_for(frame_ids[index])
    with daemon.client() as client:
        stats = client.stats()
    assert stats.succeeded_total == 3 and stats.in_flight == 0


def test_each_request_in_a_batch_keeps_its_own_deadline(start_daemon, make_writer, tmp_path):
    daemon = start_daemon(batching_model(tmp_path / "model", max_batch_size=4, max_queue_delay_us=400_000,
                                         timeout_ms=200))
    writer = make_writer(f"{daemon.model_id}_cam", WIDTH, HEIGHT)
    frame_id = write_flat_frame(writer)
    with RawConnection(daemon.socket) as connection:
        started = time.monotonic()
        (response,) = pipeline(connection, [request_dict(daemon.model_id, writer.camera_id, frame_id, WIDTH, HEIGHT)])
        elapsed = time.monotonic() - started
        assert response.error_code is ErrorCode.TIMEOUT, "a 400 ms batch wait must not outlive a 200 ms deadline"
        assert elapsed < 0.39
        connection.send_message({"op": "health"})
        assert connection.read_response().ready


def test_a_batch_that_runs_out_of_gpu_memory_is_answered_frame_by_frame(start_daemon, make_writer, tmp_path):
    daemon = start_daemon(batching_model(tmp_path / "model"))
    writer = make_writer(f"{daemon.model_id}_cam", WIDTH, HEIGHT, slot_count=16)
    frame_ids = [write_flat_frame(writer) for _ in range(4)]
    bodies = [request_dict(daemon.model_id, writer.camera_id, frame_id, WIDTH, HEIGHT, {"big": True})
              for frame_id in frame_ids]
    with RawConnection(daemon.socket) as connection:
        responses = pipeline(connection, bodies)
    assert [response.error_code for response in responses] == [None] * 4, [r.error for r in responses]
    assert all(response.detections[0].attributes["batch"] == 1 for response in responses)
    with daemon.client() as client:
        health, stats = client.health(), client.stats()
    assert health.ready and stats.succeeded_total == 4
    assert stats.gpu_memory_bytes is None, "no GPU here: the stats op says so rather than 0"
    assert "failed (OutOfMemoryError" in daemon.log, "the four pipelined requests ran as one batch first"
