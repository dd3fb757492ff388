"""The ``ruth-model`` command line against real daemons and rings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from ai_model_container.daemon.cli import main
from ai_model_container.device import detect_gpu
from ruth_model_tools.frame_writer import synthetic_scene

from .conftest import MODEL_FIELDS
from .helpers import write_flat_frame

RUTH_MODEL = str(Path(sys.executable).with_name("ruth-model"))
COMMANDS = ["serve", "validate", "discover", "health", "describe", "stats", "infer", "write-frames"]


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_installed_entry_point_lists_every_command():
    result = subprocess.run([RUTH_MODEL, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    for command in COMMANDS:
        assert command in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    result = run(command, "--help")
    assert result.exit_code == 0
    assert result.output.startswith(f"Usage: main {command}")
    summary = result.output.split("\n\n")[1].strip()
    assert len(summary) > 20, f"{command} --help has no description"


def test_validate_reports_each_file(tmp_path):
    good = tmp_path / "good" / "model.yaml"
    bad = tmp_path / "bad" / "model.yaml"
    good.parent.mkdir()
    bad.parent.mkdir()
    good.write_text(yaml.safe_dump(MODEL_FIELDS))
    bad.write_text(yaml.safe_dump({**MODEL_FIELDS, "limits": {"max_concurrent_requests": 0}}))
    assert run("validate", str(good)).exit_code == 0
    result = run("validate", str(good), str(bad))
    assert result.exit_code == 2
    assert f"OK      {good}: controlled 0.1.0" in result.output
    assert "INVALID" in result.output and "limits.max_concurrent_requests" in result.output


def test_validate_checks_weights_unless_told_not_to(tmp_path):
    path = tmp_path / "model.yaml"
    path.write_text(yaml.safe_dump({**MODEL_FIELDS, "weights": [{"path": "w.bin", "sha256": "0" * 64}]}))
    (tmp_path / "w.bin").write_bytes(b"weights")
    result = run("validate", str(path))
    assert result.exit_code == 2 and "sha256" in result.output
    assert run("validate", "--no-check-weights", str(path)).exit_code == 0


def test_discover_lists_valid_and_invalid_models(tmp_path):
    for name, fields in {"alpha": {"model_id": "alpha"}, "broken": {"model_version": "one"}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "model.yaml").write_text(yaml.safe_dump({**MODEL_FIELDS, **fields}))
    result = run("discover", str(tmp_path))
    assert result.exit_code == 0
    assert "OK      alpha" in result.output and "INVALID" in result.output and "model_version" in result.output


def test_health_describe_stats_of_a_running_daemon(example_daemon, socket_dir):
    for command in ("health", "describe", "stats"):
        result = subprocess.run([RUTH_MODEL, command, example_daemon.model_id, "--socket-dir", str(socket_dir)],
                                capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        answer = json.loads(result.stdout)
        assert answer["model_id"] == example_daemon.model_id and answer["op"] == command
    assert answer["requests_total"] == 0


def test_health_of_a_missing_daemon_exits_3(socket_dir):
    result = run("health", "nobody_home", "--socket-dir", str(socket_dir))
    assert result.exit_code == 3 and "cannot connect" in result.output


@pytest.mark.skipif(detect_gpu() is not None, reason="needs a host without a GPU")
def test_health_of_a_degraded_daemon_exits_3(start_daemon, controlled_model, socket_dir):
    daemon = start_daemon(controlled_model(resources={"device": "cuda", "cpu_fallback": False}))
    result = run("health", daemon.model_id, "--socket-dir", str(socket_dir))
    assert result.exit_code == 3 and json.loads(result.output)["status"] == "DEGRADED"


def test_infer_on_the_newest_frame_and_on_a_chosen_one(example_daemon, make_writer, camera_id, socket_dir):
    writer = make_writer(camera_id, 1280, 720, slot_count=2)
    for index in range(3):
        writer.write_bgr(synthetic_scene(index, 1280, 720)[0])
    base = ["infer", example_daemon.model_id, "--camera", camera_id, "--socket-dir", str(socket_dir)]
    result = subprocess.run([RUTH_MODEL, *base], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["frame_id"] == 3 and len(answer["detections"]) == 2 and answer["error_code"] is None
    nothing_bright = run(*base, "--set", "threshold=250", "--set", "min_area=64")
    assert nothing_bright.exit_code == 0 and json.loads(nothing_bright.output)["detections"] == []
    expired = run(*base, "--frame-id", "1")
    assert expired.exit_code == 1 and json.loads(expired.output)["error_code"] == "FRAME_EXPIRED"


def test_infer_on_a_missing_camera_or_daemon_fails_clearly(make_writer, camera_id, socket_dir):
    result = run("infer", "nobody_home", "--camera", camera_id, "--socket-dir", str(socket_dir))
    assert result.exit_code == 1 and "has no frame segment" in result.output
    write_flat_frame(make_writer(camera_id, 64, 48))
    result = run("infer", "nobody_home", "--camera", camera_id, "--socket-dir", str(socket_dir))
    assert result.exit_code == 3 and "cannot connect" in result.output


def test_example_client_talks_to_the_example_container(example_daemon, socket_dir, camera_id):
    result = subprocess.run(
        [sys.executable, "-m", "ruth_model_tools.example_client", "--model-id", example_daemon.model_id,
         "--camera", camera_id, "--frames", "3", "--socket-dir", str(socket_dir)],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("health: ") and len(lines) == 4
    answers = [json.loads(line) for line in lines[1:]]
    assert [answer["frame_id"] for answer in answers] == [1, 2, 3]
    assert all(answer["error_code"] is None and len(answer["detections"]) == 2 for answer in answers)
