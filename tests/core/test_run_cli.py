"""``ruth-ai run`` as a real process: SIGHUP, registry changes from the CLI, metrics, clean exit."""

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import yaml
from prometheus_client.parser import text_string_to_metric_families
from testkit import wait_for

from .helpers import read_events


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def target_pairs(url):
    try:
        text = urllib.request.urlopen(url, timeout=2).read().decode()
    except OSError:
        return None
    return sorted((s.labels["camera"], s.labels["model"]) for f in text_string_to_metric_families(text)
                  for s in f.samples if s.name == "ruth_ai_subscription_target_fps")


def ruth_ai(*args, env):
    return subprocess.run([sys.executable, "-m", "ruth_ai_core.cli", *args], env=env, capture_output=True, text=True, timeout=30)


def test_run_reconciles_on_sighup_and_registry_changes_and_exits_cleanly(
        start_daemon, publisher, cameras, socket_dir, tmp_path):
    a, b = start_daemon(), start_daemon()
    cam1, cam2 = cameras
    publisher([cam1, cam2], fps=25)
    env = {**os.environ, "RUTH_AI_REGISTRY": str(tmp_path / "reg.sqlite3"), "VAS_MODEL_SOCKET_DIR": str(socket_dir)}
    for daemon in (a, b):
        assert ruth_ai("models", "import", "--from-daemon", daemon.model_id, env=env).returncode == 0
    assignments = tmp_path / "assignments.yaml"
    assignments.write_text(yaml.safe_dump({"assignments": [{"camera": cam1, "model": a.model_id, "fps": 5}]}))
    port = free_port()
    url = f"http://127.0.0.1:{port}/metrics"
    events = tmp_path / "events.jsonl"
    log = (tmp_path / "core.log").open("w")
    core = subprocess.Popen([sys.executable, "-m", "ruth_ai_core.cli", "run", "--assignments", str(assignments),
                             "--events", str(events), "--metrics-port", str(port), "--health-interval", "0.2",
                             "--watch-interval", "60"], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: target_pairs(url) == [(cam1, a.model_id)], timeout_s=15, message="first subscription")
        # The watch interval is 60 s, so only SIGHUP can make this change visible quickly.
        assignments.write_text(yaml.safe_dump({"assignments": [
            {"camera": cam1, "model": a.model_id, "fps": 5}, {"camera": cam2, "model": b.model_id, "fps": 5}]}))
        core.send_signal(signal.SIGHUP)
        wait_for(lambda: target_pairs(url) == sorted([(cam1, a.model_id), (cam2, b.model_id)]), timeout_s=5,
                 message="reconciled after SIGHUP")
        assert ruth_ai("models", "disable", a.model_id, env=env).returncode == 0
        core.send_signal(signal.SIGHUP)
        wait_for(lambda: target_pairs(url) == [(cam2, b.model_id)], timeout_s=5, message="disabled model removed")
        wait_for(lambda: read_events(events, cam2, b.model_id), timeout_s=5, message="events of the new pair")
        status = ruth_ai("status", "--metrics-url", url, "--interval", "0.5", env=env)
        assert status.returncode == 0 and b.model_id in status.stdout
    finally:
        core.send_signal(signal.SIGTERM)
        code = core.wait(20)
        log.close()
    output = (tmp_path / "core.log").read_text()
    assert code == 0, output
    assert f"assignment {cam1} -> {a.model_id} rejected: model '{a.model_id}' is disabled" in output
    final = [line for line in output.splitlines() if "stopped: selected=" in line][-1]
    fields = dict(part.split("=", 1) for part in final.split("stopped: ")[1].split(" ") if "=" in part and not part.startswith("dropped"))
    assert fields["in_flight"] == "0"
    lines = read_events(events)
    assert int(fields["results"]) + int(fields["errors"]) == len(lines)


def test_run_refuses_a_bad_assignments_file(tmp_path):
    bad = tmp_path / "a.yaml"
    bad.write_text("assignments:\n  - {camera: 'no spaces allowed', model: m, fps: 5}\n")
    result = subprocess.run([sys.executable, "-m", "ruth_ai_core.cli", "run", "--assignments", str(bad),
                             "--registry", str(tmp_path / "r.sqlite3")], capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "assignments.0.camera" in result.stderr
