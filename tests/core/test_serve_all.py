"""``ruth-model serve-all``: one process per model, a killed one restarts and shows unhealthy meanwhile."""

import os
import shutil
import signal
import subprocess
import sys

import yaml
from testkit import EXAMPLE_MODEL_DIR, unique_id, wait_for

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.paths import socket_path
from bench.proc_stats import children, command_line


def copy_example(root, model_id):
    directory = root / model_id
    shutil.copytree(EXAMPLE_MODEL_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((directory / "model.yaml").read_text())
    config["model_id"] = model_id
    (directory / "model.yaml").write_text(yaml.safe_dump(config))


def health(path):
    try:
        with ModelClient(path, connect_timeout_s=2.0, request_timeout_s=5.0) as client:
            return client.health()
    except ClientError:
        return None


def child_pid(supervisor_pid, model_id):
    """The serve-all child serving ``model_id`` (its command line names the model directory)."""
    for pid in children(supervisor_pid):
        if f"/{model_id} " in command_line(pid) + " ":
            return pid
    return None


def test_serve_all_hosts_each_model_alone_and_restarts_a_killed_one(tmp_path, socket_dir):
    root = tmp_path / "models"
    root.mkdir()
    first, second = unique_id("m"), unique_id("m")
    copy_example(root, first)
    copy_example(root, second)
    (root / "broken").mkdir()
    (root / "broken" / "model.yaml").write_text("model_id: broken\n")
    log = (tmp_path / "serve-all.log").open("w")
    supervisor = subprocess.Popen(
        [sys.executable, "-m", "ai_model_container.daemon.cli", "serve-all", str(root), "--socket-dir", str(socket_dir),
         "--backoff-max", "1"], stdout=log, stderr=subprocess.STDOUT)
    try:
        sockets = {m: socket_path(m, str(socket_dir)) for m in (first, second)}
        for model_id, path in sockets.items():
            wait_for(lambda: (h := health(path)) is not None and h.ready, timeout_s=30, message=f"{model_id} ready")
        victim = child_pid(supervisor.pid, first)
        assert victim is not None and victim != child_pid(supervisor.pid, second)

        os.kill(victim, signal.SIGKILL)
        down = wait_for(lambda: (h := health(sockets[first])) is not None and not h.ready and h, timeout_s=5,
                        message="stand-in reporting the dead model")
        assert down.status.value == "DEGRADED" and "exited with code -9" in down.error
        assert health(sockets[second]).ready  # the other model never noticed
        wait_for(lambda: (h := health(sockets[first])) is not None and h.ready, timeout_s=30, message="restarted")
        assert child_pid(supervisor.pid, first) not in (None, victim)
    finally:
        supervisor.send_signal(signal.SIGTERM)
        code = supervisor.wait(30)
        log.close()
    output = (tmp_path / "serve-all.log").read_text()
    assert code == 0, output
    assert "skipping" in output and "broken" in output
    assert not list(socket_dir.glob("*.sock")), "sockets left behind"


def test_serve_all_with_nothing_valid_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "ai_model_container.daemon.cli", "serve-all", str(tmp_path)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "no valid model" in result.stderr
