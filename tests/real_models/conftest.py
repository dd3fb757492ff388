"""Fixtures for the real models under models/: one daemon per test module, real photos in, answers out.

A model daemon takes a second or two to load its weights, so each test module
starts its model once; every test writes its own ring (random camera id).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import pytest
from testkit import Daemon, launch_daemon, unique_id

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.schema import InferenceResponse

from .model_photos import MODELS


@pytest.fixture(scope="module")
def serve_model() -> Iterator[Callable[[str], Daemon]]:
    """Start ``models/<name>`` as a real daemon for the whole module; stopped (socket removed) at teardown."""
    directory = Path(tempfile.mkdtemp(prefix="ruth-", dir="/tmp"))
    daemons: list[Daemon] = []

    def serve(name: str, **kwargs: Any) -> Daemon:
        daemon = launch_daemon(MODELS / name, directory, model_id=unique_id(name.replace("-", "_")), **kwargs)
        daemons.append(daemon)
        return daemon

    yield serve
    for daemon in daemons:
        daemon.stop()
    shutil.rmtree(directory, ignore_errors=True)
    for daemon in daemons:
        assert not daemon.socket.exists(), f"{daemon.socket} left behind"


@pytest.fixture
def ask(make_writer, camera_id) -> Callable[..., InferenceResponse]:
    """Publish a BGR image into a fresh ring and send one inference request for it."""

    def ask(daemon: Daemon, image: np.ndarray, config: Optional[dict[str, Any]] = None) -> InferenceResponse:
        height, width = image.shape[0] & ~1, image.shape[1] & ~1
        writer = make_writer(unique_id(camera_id), width, height)
        frame_id = writer.write_bgr(np.ascontiguousarray(image[:height, :width]))
        with daemon.client() as client:
            return client.infer(inference_request(daemon.model_id, writer.camera_id, frame_id, width, height, config))

    return ask
