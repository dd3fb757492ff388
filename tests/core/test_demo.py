"""The demo as a user runs it: a bounded run with results, and Ctrl-C leaving nothing behind."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from .helpers import wait_for

DEMO = Path(__file__).resolve().parents[2] / "scripts" / "demo.py"
FAST = ["--source", "synthetic", "--cameras", "2", "--model", "example", "--model", "example_b", "--no-install"]


def processes_mentioning(text):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as handle:
                    if text.encode() in handle.read():
                        found.append(int(pid))
            except OSError:
                pass
    return found


def run_dir_and_tag(log_path):
    match = re.search(r"run directory \(sockets, registry, logs\): (/tmp/ruth-demo-([0-9a-f]{6})-\S+)", log_path.read_text())
    return (Path(match.group(1)), match.group(2)) if match else None


def assert_nothing_left(run_dir, tag):
    assert not run_dir.exists(), f"{run_dir} left behind"
    assert not [p for p in os.listdir("/dev/shm") if p.endswith(tag)], "shared memory left behind"
    assert processes_mentioning(str(run_dir)) == [], "processes left behind"


def test_a_short_demo_run_reports_and_cleans_up(tmp_path):
    result = subprocess.run([sys.executable, str(DEMO), "--duration", "5", "--output", str(tmp_path), *FAST],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    (out_dir,) = tmp_path.iterdir()
    summary = (out_dir / "summary.txt").read_text()
    assert "example_b" in summary and "core totals" in summary and "in_flight=0" in summary
    assert (out_dir / "events.jsonl").read_text().count("\n") > 10
    assert list((out_dir / "snapshots").glob("*.jpg")), "no annotated snapshot"
    assert "footage: synthetic" in result.stderr
    log = tmp_path / "stderr.txt"
    log.write_text(result.stderr)
    assert_nothing_left(*run_dir_and_tag(log))


def test_ctrl_c_stops_everything_and_leaves_nothing(tmp_path):
    log_path = tmp_path / "demo.log"
    with log_path.open("w") as log:
        demo = subprocess.Popen([sys.executable, str(DEMO), "--duration", "120", "--output", str(tmp_path / "out"), *FAST],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            run_dir, tag = wait_for(lambda: run_dir_and_tag(log_path), timeout_s=30, message="run directory")
            wait_for(lambda: list((tmp_path / "out").glob("*/events.jsonl")), timeout_s=60, message="events flowing")
            assert processes_mentioning(str(run_dir)), "the demo's children should be running"
            time.sleep(1.0)
            demo.send_signal(signal.SIGINT)
            code = demo.wait(60)
        finally:
            if demo.poll() is None:
                demo.kill()
    assert code == 130, log_path.read_text()[-3000:]
    assert "clean: no demo process" in log_path.read_text()
    assert_nothing_left(run_dir, tag)
