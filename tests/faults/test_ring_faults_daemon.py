"""Issue 7, items 1, 2, 3 and 10, daemon side: whatever a ring's path holds, or whatever happens to a
ring after it was mapped, costs one request a FRAME_* answer, never the daemon.

Each test uses a real ``ruth-model serve`` process, real rings in /dev/shm and the real socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from testkit import EXAMPLE_MODEL_DIR, Daemon, unique_id

from ai_model_container.contract.client import inference_request
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import ErrorCode
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

from .conftest import HEIGHT, HOSTILE_KINDS, WIDTH
from .helpers import remove_path, ring_path, wait_for


def infer(daemon, camera_id, frame_id=1, width=WIDTH, height=HEIGHT):
    with daemon.client(request_timeout_s=10.0) as client:
        return client.infer(inference_request(daemon.model_id, camera_id, frame_id, width, height))


def assert_daemon_fine(daemon):
    """Alive, answering health, and no traceback in its log: nothing escaped as an exception."""
    assert daemon.process.poll() is None, f"the daemon died with {daemon.process.returncode}:\n{daemon.log[-3000:]}"
    with daemon.client(request_timeout_s=5.0) as client:
        assert client.health().ready
    assert "Traceback" not in daemon.log, daemon.log[-3000:]


# -- item 1: a ring truncated under a live mapping ---------------------------------------------------


@pytest.mark.parametrize("size", [0, 4096])
def test_a_ring_truncated_after_it_was_mapped_is_invalid_not_sigbus(module_daemon, size):
    """The request comes at once after the truncation, well inside the 50 ms the mapping used to be
    trusted for; 9 tries, the issue's reproduction (the daemon died with SIGBUS 9 of 9 times)."""
    for _ in range(9):
        camera_id = unique_id("cam")
        writer = FrameWriter(camera_id, WIDTH, HEIGHT, 4)
        try:
            frame_id = writer.write_bgr(synthetic_scene(1, WIDTH, HEIGHT)[0])
            assert infer(module_daemon, camera_id, frame_id).error_code is None  # mapped now
            writer.close(unlink=False)  # this process never touches the ring again
            os.truncate(ring_path(camera_id), size)
            response = infer(module_daemon, camera_id, frame_id)
            assert response.error_code is ErrorCode.FRAME_INVALID, response
            assert camera_id in response.error
        finally:
            writer.close(unlink=False)
            remove_path(ring_path(camera_id))
    assert_daemon_fine(module_daemon)


def test_a_truncated_ring_replaced_by_a_whole_one_is_served_again(module_daemon, camera_id):
    writer = FrameWriter(camera_id, WIDTH, HEIGHT, 4)
    frame_id = writer.write_bgr(synthetic_scene(1, WIDTH, HEIGHT)[0])
    assert infer(module_daemon, camera_id, frame_id).error_code is None
    writer.close(unlink=False)
    os.truncate(ring_path(camera_id), 4096)
    assert infer(module_daemon, camera_id, frame_id).error_code is ErrorCode.FRAME_INVALID
    with FrameWriter(camera_id, WIDTH, HEIGHT, 4) as replacement:
        frame_id = replacement.write_bgr(synthetic_scene(2, WIDTH, HEIGHT)[0])
        response = infer(module_daemon, camera_id, frame_id)
        assert response.error_code is None and len(response.detections) == 2


# -- items 2 and 3: what else may sit at a ring's path ------------------------------------------------


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_anything_but_a_ring_at_the_path_is_frame_invalid_and_costs_nobody_else(module_daemon, hostile_ring,
                                                                             make_writer, kind):
    """FIFO, directory, socket, symlinks, sparse and absurd files, a world-writable ring: FRAME_INVALID with
    the reason, at once (a FIFO used to freeze the daemon), while another camera is served as usual."""
    victim, bystander = unique_id("cam"), unique_id("cam")
    reason = hostile_ring(victim, kind)
    good = make_writer(bystander, WIDTH, HEIGHT)
    frame_id = good.write_bgr(synthetic_scene(1, WIDTH, HEIGHT)[0])
    for _ in range(2):  # the second request finds nothing cached either
        response = infer(module_daemon, victim)
        assert response.error_code is ErrorCode.FRAME_INVALID, response
        assert reason in response.error and victim in response.error
    assert infer(module_daemon, bystander, frame_id).error_code is None
    assert_daemon_fine(module_daemon)


def test_a_device_node_at_the_path_is_frame_invalid_and_never_opened(module_daemon, hostile_ring, camera_id):
    path = ring_path(camera_id)
    try:
        os.mknod(path, 0o644 | 0o020000, os.makedev(1, 3))  # a character device: /dev/null's numbers
    except PermissionError:
        pytest.skip("creating a device node needs CAP_MKNOD")
    try:
        response = infer(module_daemon, camera_id)
        assert response.error_code is ErrorCode.FRAME_INVALID and "character device" in response.error
        assert_daemon_fine(module_daemon)
    finally:
        os.unlink(path)


def test_a_huge_sparse_file_with_a_valid_header_maps_only_the_layout(module_daemon, camera_id):
    """The file is 1 PiB but its header describes a small ring: only the layout is mapped, and served."""
    writer = FrameWriter(camera_id, WIDTH, HEIGHT, 2)
    try:
        frame_id = writer.write_bgr(synthetic_scene(3, WIDTH, HEIGHT)[0])
        writer.close(unlink=False)
        os.truncate(ring_path(camera_id), 1 << 50)
        response = infer(module_daemon, camera_id, frame_id)
        assert response.error_code is None and len(response.detections) == 2, response
    finally:
        writer.close()
        os.unlink(ring_path(camera_id))
    assert_daemon_fine(module_daemon)


# -- item 10: a ring the daemon may not read ------------------------------------------------------------


def _daemon_without_read_override(socket_dir, model_id):
    """``ruth-model serve`` that cannot read other users' files: root minus CAP_DAC_*, or this same user.

    Root reads every file whatever its mode, so as root the daemon runs under setpriv with the two
    capabilities that bypass file permissions dropped; as anyone else it runs as is.
    """
    command = [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(EXAMPLE_MODEL_DIR),
               "--socket-dir", str(socket_dir), "--model-id", model_id]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("needs setpriv (util-linux) to run the daemon without CAP_DAC_OVERRIDE")
        drop = "-dac_override,-dac_read_search"
        command = [setpriv, f"--inh-caps={drop}", f"--bounding-set={drop}", "--", *command]
    return command


def test_a_ring_the_daemon_may_not_read_is_invalid_with_the_reason(socket_dir, camera_id):
    model_id = unique_id("model")
    log_path = socket_dir / "daemon.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(_daemon_without_read_override(socket_dir, model_id), stdout=log,
                                   stderr=subprocess.STDOUT)
    daemon = Daemon(process, model_id, socket_path(model_id, str(socket_dir)), log_path)
    writer = FrameWriter(camera_id, WIDTH, HEIGHT, 2, mode=0o600)
    try:
        frame_id = writer.write_bgr(np.zeros((HEIGHT, WIDTH, 3), np.uint8))
        if os.geteuid() == 0:
            os.chown(ring_path(camera_id), 12345, 12345)  # another user's ring, mode 0600
        else:
            os.chmod(ring_path(camera_id), 0o000)
        wait_for(lambda: daemon.socket.exists() or process.poll() is not None, 30, message="the daemon's socket")
        if process.poll() is not None:
            if "Operation not permitted" in daemon.log:
                pytest.skip("setpriv may not change the capability bounding set here")
            raise AssertionError(daemon.log)
        response = infer(daemon, camera_id, frame_id)
        assert response.error_code is ErrorCode.FRAME_INVALID, response
        assert "no read permission" in response.error
        assert_daemon_fine(daemon)
    finally:
        writer.close()
        assert daemon.stop() == 0, daemon.log
