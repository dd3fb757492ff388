"""Issue 7, item 10: serve-all hands a model's socket over without a gap and without leaking threads.

Before: the stand-in unlinked the socket before the restarted model bound it again
(about a second with no socket), and each stand-in left a watchdog thread behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import yaml
from core.test_serve_all import child_pid, copy_example, health
from testkit import unique_id, wait_for

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.paths import socket_path


def start_serve_all(root, socket_dir, log_path):
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ai_model_container.daemon.cli", "serve-all", str(root), "--socket-dir", str(socket_dir),
         "--backoff-max", "0.2"], stdout=log, stderr=subprocess.STDOUT)
    log.close()
    return process


def stop(process) -> int:
    process.send_signal(signal.SIGTERM)
    try:
        return process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()


def test_the_socket_answers_throughout_a_restart(tmp_path, socket_dir):
    root = tmp_path / "models"
    root.mkdir()
    model_id = unique_id("m")
    copy_example(root, model_id)
    supervisor = start_serve_all(root, socket_dir, tmp_path / "serve-all.log")
    path = socket_path(model_id, str(socket_dir))
    failures: list[str] = []
    states: list[str] = []
    watching = threading.Event()

    def watch() -> None:
        while watching.is_set():
            try:
                with ModelClient(path, connect_timeout_s=1.0, request_timeout_s=2.0) as client:
                    answer = client.health()
                states.append(answer.status.value)
            except ClientError as exc:
                failures.append(str(exc))
            time.sleep(0.005)

    try:
        wait_for(lambda: (h := health(path)) is not None and h.ready, timeout_s=30, message="model ready")
        watching.set()
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        os.kill(child_pid(supervisor.pid, model_id), signal.SIGKILL)
        wait_for(lambda: "DEGRADED" in states, timeout_s=10, message="the stand-in seen")
        wait_for(lambda: states and states[-1] == "READY", timeout_s=30, message="back to READY")
        watching.clear()
        watcher.join(5)
    finally:
        watching.clear()
        code = stop(supervisor)
    assert failures == [], f"the socket did not answer during the restart: {failures[:3]}"
    assert code == 0, (tmp_path / "serve-all.log").read_text()
    assert not path.exists()


def test_a_crash_looping_model_does_not_pile_up_threads(tmp_path, socket_dir):
    root = tmp_path / "models"
    root.mkdir()
    model_id = unique_id("crash")
    copy_example(root, model_id)
    handler = root / model_id / "bright_regions.py"
    handler.write_text(handler.read_text() + "\n\nimport os\nos._exit(7)  # dies as soon as it is imported\n")
    config = yaml.safe_load((root / model_id / "model.yaml").read_text())
    (root / model_id / "model.yaml").write_text(yaml.safe_dump(config))
    supervisor = start_serve_all(root, socket_dir, tmp_path / "serve-all.log")
    try:
        def restarts() -> int:
            return (tmp_path / "serve-all.log").read_text().count("exited with code 7")

        wait_for(lambda: restarts() >= 3, timeout_s=60, message="three restarts")
        threads_early = len(os.listdir(f"/proc/{supervisor.pid}/task"))
        wait_for(lambda: restarts() >= 12, timeout_s=120, message="twelve restarts")
        threads_late = len(os.listdir(f"/proc/{supervisor.pid}/task"))
        assert threads_late <= threads_early + 1, f"threads grew from {threads_early} to {threads_late}"
        assert health(socket_path(model_id, str(socket_dir))).status.value == "DEGRADED"
    finally:
        code = stop(supervisor)
    assert code == 0, (tmp_path / "serve-all.log").read_text()
