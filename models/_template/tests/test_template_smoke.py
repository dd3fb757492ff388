"""Smoke test of this model: a real daemon, a frame from the reference writer, a request from example_client.

Runs with nothing but the runtime package and this directory, so it works
the same in the repository, in a copy made by ``ruth-model new`` and in CI:

    python -m pytest models/<model-id>/tests

The first tests hold for any model. The EXPECTED ANSWERS section is this
model's: replace it with real pixels your model must get right and the answer
it must give (a photo under tests/, the boxes or classes you expect).
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

from ai_model_container.contract.client import ClientError, ModelClient, inference_request
from ai_model_container.contract.model_config import load_model_config
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import ErrorCode
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

MODEL_DIR = Path(__file__).resolve().parents[1]
CONFIG = load_model_config(MODEL_DIR / "model.yaml")
WIDTH, HEIGHT = 1280, 720
STARTUP_TIMEOUT_S = 60.0


@dataclass
class Served:
    model_id: str
    socket_dir: Path

    @property
    def socket(self) -> Path:
        return socket_path(self.model_id, str(self.socket_dir))


@pytest.fixture(scope="module")
def served() -> Iterator[Served]:
    """This model as a real daemon (``ruth-model serve``), stopped with SIGTERM at the end."""
    socket_dir = Path(tempfile.mkdtemp(prefix="ruth-", dir="/tmp"))  # AF_UNIX paths must stay short
    model = Served(f"{CONFIG.model_id}_{uuid.uuid4().hex[:8]}", socket_dir)
    log = (socket_dir / "daemon.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(MODEL_DIR),
         "--socket-dir", str(socket_dir), "--model-id", model.model_id],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            assert process.poll() is None, (socket_dir / "daemon.log").read_text()
            try:
                with ModelClient(model.socket, connect_timeout_s=0.5) as client:
                    client.health()
                break
            except ClientError:
                assert time.monotonic() < deadline, "daemon not ready:\n" + (socket_dir / "daemon.log").read_text()
                time.sleep(0.1)
        yield model
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, (socket_dir / "daemon.log").read_text()
        assert not model.socket.exists(), "the daemon left its socket behind"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        shutil.rmtree(socket_dir, ignore_errors=True)


@pytest.fixture
def camera() -> Iterator[FrameWriter]:
    """A camera ring written by the reference writer (the way VAS writes), removed at the end."""
    writer = FrameWriter(f"smoke_{uuid.uuid4().hex[:8]}", WIDTH, HEIGHT, slot_count=4)
    yield writer
    writer.close()


def example_client(served: Served, camera: FrameWriter, frames: int) -> list[dict[str, Any]]:
    """Run ``python -m ruth_model_tools.example_client`` against the daemon; its responses as dicts."""
    result = subprocess.run(
        [sys.executable, "-m", "ruth_model_tools.example_client", "--model-id", served.model_id,
         "--camera", camera.camera_id, "--frames", str(frames), "--socket-dir", str(served.socket_dir)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("health: ") and json.loads(lines[0][len("health: "):])["status"] == "READY"
    return [json.loads(line) for line in lines[1:]]


def test_health_and_describe_match_model_yaml(served):
    with ModelClient(served.socket) as client:
        health = client.health()
        described = client.describe()
    assert health.ready and health.model_id == served.model_id
    assert described.model["model_version"] == CONFIG.model_version
    assert described.model["output_schema"]["classes"] == CONFIG.output_schema.classes


def test_answers_are_well_formed_for_any_frame(served, camera):
    for index in range(2):
        camera.write_bgr(synthetic_scene(index, WIDTH, HEIGHT)[0])
    responses = example_client(served, camera, frames=2)
    assert [response["frame_id"] for response in responses] == [1, 2]
    for response in responses:
        assert response["error_code"] is None, response["error"]
        for detection in response["detections"]:
            assert CONFIG.output_schema.classes[detection["class_id"]] == detection["class_name"]
            x_min, y_min, x_max, y_max = detection["bbox"]
            assert 0 <= x_min < x_max <= WIDTH and 0 <= y_min < y_max <= HEIGHT


def test_a_bad_option_is_refused(served, camera):
    frame_id = camera.write_bgr(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
    with ModelClient(served.socket) as client:
        response = client.infer(inference_request(served.model_id, camera.camera_id, frame_id, WIDTH, HEIGHT,
                                                  {"min_confidence": "high"}))
    assert response.error_code == ErrorCode.INVALID_REQUEST


# ---- EXPECTED ANSWERS: this model's; replace them with your model's ---------------------------------


def test_finds_the_bright_boxes_the_writer_drew(served, camera):
    truth = {}
    for index in (3, 40, 90):
        image, boxes = synthetic_scene(index, WIDTH, HEIGHT)
        truth[camera.write_bgr(image)] = sorted((b.x_min, b.y_min, b.x_max, b.y_max) for b in boxes)
    responses = example_client(served, camera, frames=3)
    assert {response["frame_id"] for response in responses} == set(truth)
    for response in responses:
        found = sorted(tuple(d["bbox"]) for d in response["detections"])
        expected = truth[response["frame_id"]]
        assert len(found) == len(expected), (found, expected)
        for got, want in zip(found, expected):
            assert all(abs(g - w) <= 20 for g, w in zip(got, want)), (got, want)  # one 16-pixel cell of slack
        assert all(d["confidence"] > 0.9 for d in response["detections"])


def test_a_dark_frame_has_no_detections(served, camera):
    frame_id = camera.write_bgr(np.full((HEIGHT, WIDTH, 3), 40, np.uint8))
    with ModelClient(served.socket) as client:
        response = client.infer(inference_request(served.model_id, camera.camera_id, frame_id, WIDTH, HEIGHT))
    assert response.error_code is None and response.detections == []
