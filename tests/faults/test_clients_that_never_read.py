"""Issue 7, item 4: a client that pipelines requests and never reads the answers holds nothing up.

Before: the daemon wrote answers with a blocking ``sendall`` under a lock, so once
the client's socket buffer was full the daemon's shutdown, and the supervisor
behind a stand-in, waited on that client for as long as it pleased.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from core.test_serve_all import child_pid, copy_example, health
from runtime.helpers import RawConnection
from testkit import EXAMPLE_MODEL_DIR, unique_id, wait_for

from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.wire import frame

UNREAD_REQUESTS = 600
DESCRIBE = frame(b'{"op": "describe"}')


def flood_without_reading(path) -> RawConnection:
    """A connection with UNREAD_REQUESTS describe requests written and no answer ever read."""
    connection = RawConnection(path, timeout_s=2.0)
    connection.sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + 5
    data = DESCRIBE * UNREAD_REQUESTS
    while sent < len(data) and time.monotonic() < deadline:
        try:
            sent += connection.sock.send(data[sent:])
        except BlockingIOError:
            time.sleep(0.01)  # the daemon stopped reading (back-pressure): what is sent is plenty
            if sent > len(DESCRIBE) * 300:
                break
    return connection


def test_sigterm_meets_the_drain_deadline_whatever_a_client_does(start_daemon):
    daemon = start_daemon(EXAMPLE_MODEL_DIR)  # started with --drain-timeout 5
    stuck = flood_without_reading(daemon.socket)
    try:
        time.sleep(0.5)
        with daemon.client() as client:
            assert client.health().ready, "other clients are served meanwhile"
        started = time.monotonic()
        daemon.process.send_signal(signal.SIGTERM)
        code = daemon.process.wait(20)
        took = time.monotonic() - started
    finally:
        stuck.close()
    assert code == 0, daemon.log
    assert took < 5 + 2, f"shutdown took {took:.1f}s with a 5 s drain deadline"


def test_a_client_that_never_reads_the_stand_in_does_not_stall_serve_all(tmp_path, socket_dir):
    root = tmp_path / "models"
    root.mkdir()
    model_id = unique_id("m")
    copy_example(root, model_id)
    log = (tmp_path / "serve-all.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "ai_model_container.daemon.cli", "serve-all", str(root), "--socket-dir", str(socket_dir),
         "--backoff-max", "1"], stdout=log, stderr=subprocess.STDOUT)
    path = socket_path(model_id, str(socket_dir))
    stuck = None
    try:
        wait_for(lambda: (h := health(path)) is not None and h.ready, timeout_s=30, message="model ready")
        os.kill(child_pid(supervisor.pid, model_id), signal.SIGKILL)
        wait_for(lambda: (h := health(path)) is not None and h.status.value == "DEGRADED", timeout_s=5,
                 interval_s=0.01, message="the stand-in answering")
        stuck = flood_without_reading(path)
        restarted = time.monotonic()
        wait_for(lambda: (h := health(path)) is not None and h.ready, timeout_s=15, message="restarted")
        assert time.monotonic() - restarted < 10, "the supervisor was held up restarting the model"
        started = time.monotonic()
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(30)
        assert time.monotonic() - started < 15
    finally:
        if stuck is not None:
            stuck.close()
        if supervisor.poll() is None:
            supervisor.kill()
            supervisor.wait()
        log.close()
    assert code == 0, (tmp_path / "serve-all.log").read_text()
