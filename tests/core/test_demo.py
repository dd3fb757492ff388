"""The demo as a user runs it: a bounded run with results, and Ctrl-C leaving nothing behind."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from testkit import wait_for

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
    assert "cameras:" in summary and "synthetic scene" in summary, "the summary says what each camera plays"
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


# -- the camera plan, the why-nothing explanation, the slideshow: plain functions, no processes ----------

sys.path.insert(0, str(DEMO.parent))
import demo  # noqa: E402  (scripts/ is not a package)

DEFAULT_MODELS = ["fall-detection", "face-detection", "example"]
EXAMPLE = frozenset({"example"})


def feeds(cameras):
    return {camera.camera_id: camera.models for camera in cameras}


def assert_shared_both_ways(cameras):
    """The demo's promise: one camera feeds several models, one model serves several cameras."""
    assert any(len(camera.models) > 1 for camera in cameras)
    served = {}
    for camera in cameras:
        for model_id in camera.models:
            served.setdefault(model_id, set()).add(camera.camera_id)
    assert any(len(ids) > 1 for ids in served.values())


def test_real_footage_street_cameras_feed_fall_detection_faces_get_photos_the_example_its_own_scene():
    cameras = demo.plan_cameras(DEFAULT_MODELS, str(demo.VTEST), 2, "t1", EXAMPLE, Path("/run/faces"), camera_fps=10)
    assert feeds(cameras) == {
        "street1-t1": ("fall-detection", "face-detection"),
        "street2-t1": ("fall-detection",),
        "faces-t1": ("face-detection", "fall-detection"),
        "bright-t1": ("example",),
    }
    by_id = {camera.camera_id: camera for camera in cameras}
    assert {by_id["street1-t1"].source, by_id["street2-t1"].source} == {str(demo.VTEST)}
    faces = by_id["faces-t1"]
    assert (faces.kind, faces.source, faces.size, faces.hold) == ("faces", "/run/faces", (1280, 720), 30)
    assert by_id["bright-t1"].source == "synthetic"
    assert all(camera.source == "synthetic" for camera in cameras if "example" in camera.models), \
        "the example model never gets a real-footage camera"
    assert_shared_both_ways(cameras)


def test_synthetic_footage_the_example_shares_the_synthetic_cameras_and_faces_still_get_photos():
    cameras = demo.plan_cameras(DEFAULT_MODELS, "synthetic", 2, "t2", EXAMPLE, Path("/run/faces"))
    assert feeds(cameras) == {
        "synth1-t2": ("fall-detection", "face-detection", "example"),
        "synth2-t2": ("fall-detection", "example"),
        "faces-t2": ("face-detection", "fall-detection"),
    }
    assert_shared_both_ways(cameras)


def test_the_fast_path_two_example_ids_share_two_synthetic_cameras():
    cameras = demo.plan_cameras(["example", "example_b"], "synthetic", 2, "t3", frozenset({"example", "example_b"}),
                                Path("/run/faces"))
    assert feeds(cameras) == {"synth1-t3": ("example", "example_b"), "synth2-t3": ("example", "example_b")}
    assert_shared_both_ways(cameras)


def test_only_example_models_on_real_footage_play_the_synthetic_scene():
    cameras = demo.plan_cameras(["example"], str(demo.VTEST), 2, "t4", EXAMPLE)
    assert {camera.source for camera in cameras} == {"synthetic"}
    assert feeds(cameras) == {"synth1-t4": ("example",), "synth2-t4": ("example",)}


def test_no_faces_camera_without_photos_or_without_a_face_model():
    assert "faces-t5" not in feeds(demo.plan_cameras(DEFAULT_MODELS, str(demo.VTEST), 2, "t5", EXAMPLE, None))
    assert "faces-t6" not in feeds(demo.plan_cameras(["fall-detection"], str(demo.VTEST), 2, "t6",
                                                     slideshow=Path("/run/faces")))


def test_assignments_every_pair_once_at_the_target_fps_with_the_faces_pair_options():
    cameras = demo.plan_cameras(DEFAULT_MODELS, str(demo.VTEST), 2, "t7", EXAMPLE, Path("/run/faces"))
    assignments = demo.plan_assignments(cameras, 2.0)
    pairs = [(a["camera"], a["model"]) for a in assignments]
    assert len(pairs) == len(set(pairs)) == 6
    assert {a["fps"] for a in assignments} == {2.0}
    configs = {(a["camera"], a["model"]): a.get("config") for a in assignments}
    assert configs[("faces-t7", "face-detection")] == {"min_confidence": 0.9}
    assert configs[("street1-t7", "face-detection")] is None


def event(model_id="face-detection", detections=(), error_code=None, error=None, frame_id=1):
    return {"camera_id": "cam", "model_id": model_id, "frame_id": frame_id, "frame_timestamp_ns": frame_id * 10**8,
            "latency_ms": 5.0, "detections": list(detections), "error_code": error_code, "error": error,
            "width": 64, "height": 48}


def test_why_nothing_is_silent_when_something_was_found():
    found = [event(), event(detections=[{"bbox": [0, 0, 1, 1]}], frame_id=2)]
    assert demo.why_nothing("face-detection", found, {}) is None


def test_why_nothing_all_requests_failed_names_the_most_common_error_and_its_message():
    events = [event(error_code="OVERLOADED", error="no inference worker free", frame_id=i) for i in range(3)]
    events.append(event(error_code="TIMEOUT", error="too slow", frame_id=9))
    reason = demo.why_nothing("fall-detection", events, {"in_flight_limit": 2})
    assert reason.startswith("all 4 requests failed, 3 with OVERLOADED: no inference worker free")
    assert "TIMEOUT x1" in reason


def test_why_nothing_all_frames_dropped_lists_the_reasons():
    reason = demo.why_nothing("fall-detection", [], {"in_flight_limit": 7.0, "model_unavailable": 3.0, "stopping": 0.0})
    assert reason == ("all 10 selected frames were dropped before reaching the model "
                      "(in_flight_limit=7, model_unavailable=3)")
    assert demo.why_nothing("fall-detection", [], None).startswith("no frame was selected")


def test_why_nothing_answered_but_found_nothing_gives_the_models_hint_and_options():
    events = [event(frame_id=i) for i in range(5)] + [event(error_code="OVERLOADED", error="busy", frame_id=7)]
    reason = demo.why_nothing("face-detection", events, {}, {"min_confidence": 0.9}, "vtest.avi")
    assert reason.startswith("answered 5 frames, found nothing: faces smaller than its min_face_size (30 px")
    assert "and the faces in vtest.avi are a few pixels across" in reason and "options here: min_confidence=0.9" in reason
    assert reason.endswith("1 more request failed, most with OVERLOADED")
    assert "vtest.avi" not in demo.why_nothing("face-detection", events, {}, None, "synthetic")
    assert "min_person_score" in demo.why_nothing("fall-detection", [event("fall-detection")])
    assert "has no people" in demo.why_nothing("fall-detection", [event("fall-detection")], footage="synthetic")
    assert demo.why_nothing("someone-elses-model", [event("someone-elses-model")]) == "answered 1 frame, found nothing"
    assert set(demo.NOTHING_FOUND_HINTS) >= {"face-detection", "fall-detection"}


def test_the_summary_lists_the_cameras_and_says_why_for_each_empty_pair_only():
    cameras = [demo.Camera("cam", "street", "/data/vtest.avi", ("face-detection", "example"), description="x.avi")]
    events = [event(frame_id=1), event("example", detections=[{"bbox": [0, 0, 1, 1]}], frame_id=1)]
    assignments = [{"camera": "cam", "model": "face-detection", "fps": 2.0}, {"camera": "cam", "model": "example", "fps": 2.0}]
    summary = demo.summary_table(events, assignments, None, None, cameras)
    assert "cam            x.avi -> face-detection, example" in summary
    (why,) = [line for line in summary.splitlines() if line.startswith("  cam / ")]
    assert why.startswith("  cam / face-detection: answered 1 frame, found nothing: faces smaller")
    assert why.endswith("and the faces in vtest.avi are a few pixels across"), "the hint for the camera's footage"


def test_the_slideshow_letterboxes_the_photos_that_exist_in_order(tmp_path):
    wide, tall = tmp_path / "wide.png", tmp_path / "tall.png"
    cv2.imwrite(str(wide), np.full((100, 400, 3), 200, np.uint8))
    cv2.imwrite(str(tall), np.full((300, 100, 3), 200, np.uint8))
    used = demo.assemble_slideshow(tmp_path / "show", ((wide, None), (tmp_path / "missing.jpg", tall),
                                                       (tmp_path / "gone.png", None)), (320, 180))
    assert used == [wide, tall]
    shown = sorted((tmp_path / "show").iterdir())
    assert [p.name for p in shown] == ["00_wide.jpg", "01_tall.jpg"]
    first, second = (cv2.imread(str(p)) for p in shown)
    assert first.shape == second.shape == (180, 320, 3)
    assert first[90, 160].mean() > 150 and first[5, 160].mean() < 60, "wide: bars above and below"
    assert second[90, 160].mean() > 150 and second[90, 5].mean() < 60, "tall: bars left and right"


def test_the_repositorys_face_photos_are_always_in_the_slideshow(tmp_path):
    used = demo.assemble_slideshow(tmp_path / "faces")
    assert {demo.REPO_PHOTOS / "astronaut.jpg", demo.REPO_PHOTOS / "camera.jpg"} <= set(used)
    assert all(cv2.imread(str(p)).shape == (720, 1280, 3) for p in (tmp_path / "faces").iterdir())
