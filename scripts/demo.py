"""The end-to-end demo: real footage -> shared memory -> model daemons -> Ruth AI Core -> events.

What it starts, each as a real local process:

1. one model daemon per model (``ruth-model serve``): the models named in
   DEMO_MODELS, fall-detection and face-detection from models/ and the
   built-in example model (a bright-region detector), the example under two
   ids when fewer than two are available; ``--model`` picks others. A new
   directory in models/ (``ruth-model new``) changes nothing. With
   ``--docker``, the models' images as containers instead (demo_docker.py);
2. the reference VAS writer (``ruth-model write-frames``), one process per
   source, playing into one shared-memory ring per camera. The camera plan
   (plan_cameras) gives every model footage it can find something in:

   - street cameras (``--cameras N``): Debian's opencv-doc vtest.avi (real
     pedestrians; installed on the spot when running as root) feeding
     fall-detection; the first also feeds face-detection, whose faces there
     are too small to find (the summary says so);
   - a faces camera: a 1280x720 slideshow of real photos with visible faces
     (scikit-image's and OpenCV's samples, labelme's examples: whichever
     are installed, the two in tests/real_models/photos always), each photo
     held for a few seconds, feeding face-detection and fall-detection;
   - a synthetic camera of its own (moving bright boxes) for the example
     model, which never gets a real-footage camera: its boxes would clutter
     every snapshot. With synthetic footage (no opencv-doc, or ``--source
     synthetic``) the street cameras play that scene, said clearly, and the
     example shares them instead.

   So one camera feeds several models (the first street camera, the faces
   camera) and one model serves several cameras (fall-detection: every
   street camera and the faces camera);
3. Ruth AI Core (``ruth-ai run``) with those assignments, every pair at
   ``--fps``, and models imported into a fresh registry from the daemons'
   describe op.

It shows live progress (the core's metrics, as ``ruth-ai status`` prints
them), stops after ``--duration`` seconds or on Ctrl-C, and leaves in the
output folder: the events file, a summary (cameras, a table per pair, and for
every pair that found nothing, why), and annotated snapshots.
No process, socket or shared-memory segment outlives it.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Optional, Protocol, TypeVar

import click
import cv2
import demo_docker  # scripts/, next to this file
import numpy as np
import yaml

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.model_config import MODEL_FILE, ModelConfigError, load_model_config
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import FrameMetadata
from ai_model_container.contract.shm_layout import segment_name, segment_reference
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.status import StatusUnavailable, fetch, parse, render
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR as EXAMPLE_MODEL

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE_MODEL_DIR = EXAMPLE_MODEL
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
VTEST = OPENCV_DATA / "vtest.avi"
LABELME_DATA = Path("/usr/share/doc/labelme-examples/examples/bbox_detection/data_annotated")
REPO_PHOTOS = ROOT / "tests" / "real_models" / "photos"
# The faces camera's slideshow, in playing order, each photo with a stand-in when it is not installed
# (None: none). Checked by hand: face-detection finds every face in them (astronaut and camera: one each,
# 2011_000006: three, 2011_000003: two, basketball: one, messi5: one) at min_confidence 0.9 once each is
# letterboxed to 1280x720; at its default (0.7) it also boxes a patch of astronaut and of camera, and
# messi5's arm in the original.
FACES_PHOTOS: tuple[tuple[Path, Optional[Path]], ...] = (
    (REPO_PHOTOS / "astronaut.jpg", None),
    (LABELME_DATA / "2011_000006.jpg", None),
    (OPENCV_DATA / "basketball1.png", REPO_PHOTOS / "basketball.jpg"),  # the same photo, re-encoded
    (REPO_PHOTOS / "camera.jpg", None),
    (LABELME_DATA / "2011_000003.jpg", None),
    (OPENCV_DATA / "messi5.jpg", None),
    (OPENCV_DATA / "basketball2.png", None),
)
FACES_SIZE = (1280, 720)
SLIDE_SECONDS = 3.0
BRIGHT_SIZE = (640, 360)  # the example model's own synthetic camera: small, so it costs the writer little
# Models the faces camera is for; it feeds every model that is not synthetic-only.
FACES_MODELS = ("face-detection",)
# Per-request options of a (camera kind, model) pair; they reach the model through the assignment's config.
PAIR_CONFIG: dict[tuple[str, str], dict[str, object]] = {
    ("faces", "face-detection"): {"min_confidence": 0.9},
}
# Why a model may answer every frame and find nothing, where the demo knows, by model id: what the model
# leaves out, and what a footage lacks (keyed by the camera's source: a file name, or 'synthetic').
NOTHING_FOUND_HINTS: dict[str, tuple[str, dict[str, str]]] = {
    "face-detection": ("faces smaller than its min_face_size (30 px by default) are not searched",
                       {"vtest.avi": "the faces in vtest.avi are a few pixels across",
                        "synthetic": "the synthetic scene has no faces"}),
    "fall-detection": ("no person scored above its min_person_score (0.1 by default)",
                       {"synthetic": "the synthetic scene has no people"}),
    "example": ("no region brighter than its threshold (luma 200 by default) covers its min_area (64 px)", {}),
}
STARTUP_TIMEOUT_S = 60.0
SNAPSHOTS_PER_PAIR = 4
SNAPSHOT_SPACING_S = 4.0
# What the demo serves without --model, in this order. "example" is the developer tools' built-in
# example model (no image, so --docker leaves it out); the others are directories of models/. Named
# here, not discovered, so a model added to models/ never replaces them.
DEMO_MODELS = ("fall-detection", "face-detection", "example")
EXAMPLE_MODEL_ID = "example"
MODEL_COLOURS = {"fall-detection": (0, 200, 255), "face-detection": (80, 255, 80), "example": (255, 120, 60)}
COLOURS = [(0, 200, 255), (80, 255, 80), (255, 120, 60), (200, 80, 255)]
# The fall model's skeleton: MoveNet's (COCO) keypoint names, joined where a body is.
BONES = (("left_shoulder", "right_shoulder"), ("left_shoulder", "left_elbow"), ("left_elbow", "left_wrist"),
         ("right_shoulder", "right_elbow"), ("right_elbow", "right_wrist"), ("left_shoulder", "left_hip"),
         ("right_shoulder", "right_hip"), ("left_hip", "right_hip"), ("left_hip", "left_knee"),
         ("left_knee", "left_ankle"), ("right_hip", "right_knee"), ("right_knee", "right_ankle"),
         ("nose", "left_eye"), ("nose", "right_eye"), ("left_eye", "left_ear"), ("right_eye", "right_ear"))
BODY_KEYPOINTS = {name for bone in BONES for name in bone}
KEYPOINT_MIN_SCORE = 0.2


S = TypeVar("S", bound="Stoppable")


def say(message: str) -> None:
    click.echo(f"[demo] {message}", err=True)


# -- footage -------------------------------------------------------------------------------


def find_footage(source: str, install: bool) -> str:
    """The video to play: an explicit path, vtest.avi (installing opencv-doc if allowed), or synthetic."""
    if source != "auto":
        return source
    if VTEST.exists():
        return str(VTEST)
    if install and os.geteuid() == 0 and shutil.which("apt-get"):
        say("real footage not installed: apt-get install -y opencv-doc (for vtest.avi, about 100 MB)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        result = subprocess.run(["apt-get", "install", "-y", "-q", "opencv-doc"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if result.returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            result = subprocess.run(["apt-get", "install", "-y", "-q", "opencv-doc"], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if VTEST.exists():
            return str(VTEST)
        say(f"installing opencv-doc failed: {result.stderr.strip()[-300:]}")
    say("NO REAL FOOTAGE: playing the SYNTHETIC scene (moving bright boxes). "
        f"Install Debian's opencv-doc for {VTEST}, or pass --source VIDEO.")
    return "synthetic"


# -- processes -----------------------------------------------------------------------------


@dataclass
class Child:
    name: str
    process: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.process.poll() is None

    def tail(self, lines: int = 15) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self, timeout_s: float = 15.0) -> None:
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                say(f"{self.name} did not stop in {timeout_s:.0f}s; killing it")
                self.process.kill()
                self.process.wait()


class Stoppable(Protocol):
    name: str

    def alive(self) -> bool: ...

    def tail(self, lines: int = 15) -> str: ...

    def stop(self) -> None: ...


class Processes:
    """Children in their own sessions (and model containers), so a terminal Ctrl-C reaches only the demo,
    which stops them in reverse order of start."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.children: list[Stoppable] = []

    def start(self, name: str, command: list[str], env: Optional[dict[str, str]] = None) -> Child:
        log_path = self.run_dir / f"{name}.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                                       env={**os.environ, **(env or {})})
        return self.adopt(Child(name, process, log_path))

    def adopt(self, child: S) -> S:
        """Stop ``child`` with the others at the end (a model container, say)."""
        self.children.append(child)
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()


def ruth_model(*args: str) -> list[str]:
    return [sys.executable, "-m", "ai_model_container.daemon.cli", *args]


def wait_ready(child: Stoppable, socket: Path, stop: threading.Event) -> bool:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline and not stop.is_set():
        if not child.alive():
            return False
        try:
            with ModelClient(socket, connect_timeout_s=0.5, request_timeout_s=2.0) as client:
                if client.health().ready:
                    return True
        except ClientError:
            pass
        time.sleep(0.1)
    return False


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# -- models and assignments ----------------------------------------------------------------


def choose_models(requested: tuple[str, ...], images: bool = False) -> list[tuple[str, Path]]:
    """(model_id, model_dir) pairs: --model ID or ID=DIR, else DEMO_MODELS.

    With ``images`` (--docker) only models with a directory under models/, which is what build.sh
    builds images from; the example model has no image.
    """
    if requested:
        chosen = []
        for item in requested:
            model_id, _, directory = item.partition("=")
            if directory:
                chosen.append((model_id, Path(directory)))
            elif (ROOT / "models" / model_id / "model.yaml").exists():
                chosen.append((model_id, ROOT / "models" / model_id))
            elif images and model_id == "template":
                chosen.append((model_id, ROOT / "models" / "_template"))
            else:
                chosen.append((model_id, EXAMPLE_MODEL_DIR))
        return chosen
    chosen = []
    for model_id in DEMO_MODELS:
        if model_id == EXAMPLE_MODEL_ID:
            if not images:
                chosen.append((model_id, EXAMPLE_MODEL_DIR))
            continue
        directory = ROOT / "models" / model_id
        try:
            load_model_config(directory / MODEL_FILE)
        except ModelConfigError as exc:
            say(f"model {model_id}: left out, {exc}")
            continue
        chosen.append((model_id, directory))
    if not images and len(chosen) < 2:
        chosen.append(("example_b", EXAMPLE_MODEL_DIR))
    return chosen


@dataclass(frozen=True)
class Camera:
    """One ring the demo writes, and the models it feeds (in the order the summary lists them)."""

    camera_id: str
    kind: str
    """'street' (the footage), 'faces' (the photo slideshow) or 'bright' (the example model's synthetic scene)."""
    source: str
    """What ``write-frames --source`` plays: a video, a folder of images or 'synthetic'."""
    models: tuple[str, ...]
    size: Optional[tuple[int, int]] = None
    """(width, height); None: the source's own."""
    hold: int = 1
    """Frames each image of a folder stays on."""
    description: str = ""


def plan_cameras(models: list[str], footage: str, street_count: int, tag: str,
                 synthetic_only: frozenset[str] = frozenset(), slideshow: Optional[Path] = None,
                 camera_fps: float = 10.0) -> list[Camera]:
    """Which camera plays what, feeding which of ``models`` (the ids that are up, in DEMO_MODELS order).

    ``synthetic_only`` are the ids of the example model (bright boxes), ``slideshow`` the folder of
    face photos (None: there is none). The first model that is not synthetic-only leads: it is fed
    by every street camera. Real footage: the first street camera feeds every such model (the others
    only the lead), the example ids get a synthetic camera of their own. Synthetic footage (or no
    model but the example): the street cameras play the synthetic scene and the example ids share
    every one of them. The faces camera, when a FACES_MODELS model is up and there is a slideshow,
    feeds every model that is not synthetic-only.
    """
    real = [m for m in models if m not in synthetic_only]
    bright = [m for m in models if m in synthetic_only]
    synthetic = footage == "synthetic" or not real
    if synthetic:
        footage = "synthetic"
    lead = (real or bright)[:1]
    name = "synth" if synthetic else "street" if footage == str(VTEST) else "cam"
    what = "synthetic scene (moving bright boxes)" if synthetic else Path(footage).name
    cameras = []
    for index in range(street_count):
        if synthetic:
            fed = [*real, *bright] if index == 0 else [*lead, *bright]
        else:
            fed = real if index == 0 else lead
        cameras.append(Camera(f"{name}{index + 1}-{tag}", "street", footage, tuple(dict.fromkeys(fed)),
                              description=what))
    if slideshow is not None and real and any(m in FACES_MODELS for m in real):
        faces_first = sorted(real, key=lambda m: m not in FACES_MODELS)
        cameras.append(Camera(f"faces-{tag}", "faces", str(slideshow), tuple(faces_first), FACES_SIZE,
                              max(1, round(camera_fps * SLIDE_SECONDS)),
                              f"photo slideshow, {FACES_SIZE[0]}x{FACES_SIZE[1]}, {SLIDE_SECONDS:g} s a photo"))
    if bright and not synthetic:
        cameras.append(Camera(f"bright-{tag}", "bright", "synthetic", tuple(bright), BRIGHT_SIZE,
                              description=f"synthetic scene (moving bright boxes), {BRIGHT_SIZE[0]}x{BRIGHT_SIZE[1]}"))
    return cameras


def plan_assignments(cameras: list[Camera], fps: float) -> list[dict]:
    """One subscription per (camera, model) of the plan, all at ``fps``, with PAIR_CONFIG's options."""
    assignments = []
    for camera in cameras:
        for model_id in camera.models:
            assignment: dict = {"camera": camera.camera_id, "model": model_id, "fps": fps}
            config = PAIR_CONFIG.get((camera.kind, model_id))
            if config:
                assignment["config"] = dict(config)
            assignments.append(assignment)
    return assignments


def letterbox(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """``image`` scaled to fit ``width`` x ``height`` (aspect kept), centred on dark grey."""
    scale = min(width / image.shape[1], height / image.shape[0])
    fitted_w, fitted_h = min(width, round(image.shape[1] * scale)), min(height, round(image.shape[0] * scale))
    fitted = cv2.resize(image, (fitted_w, fitted_h), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
    canvas = np.full((height, width, 3), 32, np.uint8)
    x, y = (width - fitted_w) // 2, (height - fitted_h) // 2
    canvas[y:y + fitted_h, x:x + fitted_w] = fitted
    return canvas


def assemble_slideshow(folder: Path, photos: tuple[tuple[Path, Optional[Path]], ...] = FACES_PHOTOS,
                       size: tuple[int, int] = FACES_SIZE) -> list[Path]:
    """Letterbox whichever ``photos`` exist (else their stand-ins) into ``folder``, numbered in playing
    order so that write-frames plays them in that order; returns the photos used."""
    folder.mkdir(parents=True, exist_ok=True)
    used = []
    for photo, stand_in in photos:
        path = photo if photo.exists() else stand_in
        image = cv2.imread(str(path), cv2.IMREAD_COLOR) if path is not None and path.exists() else None
        if image is None:
            continue
        cv2.imwrite(str(folder / f"{len(used):02d}_{path.stem}.jpg"), letterbox(image, *size),
                    [cv2.IMWRITE_JPEG_QUALITY, 95])
        used.append(path)
    return used


# -- events, snapshots, summary ------------------------------------------------------------


class EventTail:
    """Reads the core's events file as it grows; takes an annotated snapshot now and then."""

    def __init__(self, path: Path, snapshot_dir: Path) -> None:
        self.path = path
        self.snapshot_dir = snapshot_dir
        self.reader = FrameReader()
        self._handle: Optional[IO[str]] = None
        self._partial = ""
        self.events: list[dict] = []
        self.snapshots: dict[tuple[str, str], list[Path]] = defaultdict(list)
        self._last_snapshot: dict[tuple[str, str], float] = {}

    def poll(self) -> None:
        if self._handle is None:
            if not self.path.exists():
                return
            self._handle = self.path.open("r", encoding="utf-8")
        chunk = self._partial + self._handle.read()
        lines = chunk.split("\n")
        self._partial = lines.pop()
        fresh = [json.loads(line) for line in lines if line.strip()]
        self.events.extend(fresh)
        for event in reversed(fresh):
            self._maybe_snapshot(event)

    def _maybe_snapshot(self, event: dict) -> None:
        key = (event["camera_id"], event["model_id"])
        now = time.monotonic()
        if not event["detections"] or len(self.snapshots[key]) >= SNAPSHOTS_PER_PAIR:
            return
        if now - self._last_snapshot.get(key, -SNAPSHOT_SPACING_S) < SNAPSHOT_SPACING_S:
            return
        metadata = FrameMetadata(frame_id=event["frame_id"], width=event["width"], height=event["height"])
        try:
            image = self.reader.read(segment_reference(event["camera_id"]), metadata, lambda view: view.to_bgr())
        except RequestError:
            return  # the writer has moved on past that frame: try with a later event
        draw_detections(image, event)
        path = self.snapshot_dir / f"{event['camera_id']}_{event['model_id']}_{event['frame_id']:06d}.jpg"
        cv2.imwrite(str(path), image)
        self.snapshots[key].append(path)
        self._last_snapshot[key] = now

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()


def model_colour(model_id: str) -> tuple[int, int, int]:
    return MODEL_COLOURS.get(model_id) or COLOURS[zlib.crc32(model_id.encode()) % len(COLOURS)]


def draw_detections(image: np.ndarray, event: dict) -> None:
    """Boxes, labels and keypoints of one event (a skeleton where the keypoints are a body's), and a caption."""
    colour = model_colour(event["model_id"])
    for detection in event["detections"]:
        x0, y0, x1, y1 = (int(round(v)) for v in detection["bbox"])
        cv2.rectangle(image, (x0, y0), (x1, y1), colour, 2)
        label = f"{detection['class_name']} {detection['confidence']:.2f}"
        cv2.putText(image, label, (x0, max(y0 - 5, 44)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
        keypoints = detection.get("keypoints") or []
        points = {k.get("name"): (int(k["x"]), int(k["y"])) for k in keypoints if k.get("score", 1.0) >= KEYPOINT_MIN_SCORE}
        thin = y1 - y0 < 200  # a small person: a thick skeleton would hide them
        if BODY_KEYPOINTS <= {k.get("name") for k in keypoints}:  # a body (not, say, a face's landmarks)
            for a, b in BONES:
                if a in points and b in points:
                    cv2.line(image, points[a], points[b], colour, 1 if thin else 2, cv2.LINE_AA)
        for point in points.values():
            cv2.circle(image, point, 1 if thin else 3, colour, -1, cv2.LINE_AA)
    caption = f"{event['camera_id']} / {event['model_id']} / frame {event['frame_id']}"
    cv2.rectangle(image, (0, 0), (min(image.shape[1], 12 + 10 * len(caption)), 28), (0, 0, 0), -1)
    cv2.putText(image, caption, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def why_nothing(model_id: str, events: list[dict], skipped: Optional[dict[str, float]] = None,
                config: Optional[dict] = None, footage: str = "") -> Optional[str]:
    """Why a pair found nothing, from its events and the core's skip counts; None when it found something.

    Every request failed (the most common error, with its message), every selected frame was dropped
    before reaching the model (the reasons), or the model answered and found nothing (with what
    NOTHING_FOUND_HINTS says of the model and of ``footage``, the camera's source name, and the
    pair's options).
    """
    ok = [e for e in events if not e["error_code"]]
    if any(e["detections"] for e in ok):
        return None
    failed = [e for e in events if e["error_code"]]
    codes = Counter(e["error_code"] for e in failed).most_common()
    dropped = {reason: int(count) for reason, count in sorted((skipped or {}).items()) if count}
    if not events:
        if dropped:
            reasons = ", ".join(f"{reason}={count}" for reason, count in dropped.items())
            return f"all {sum(dropped.values())} selected frames were dropped before reaching the model ({reasons})"
        return "no frame was selected: the core read nothing from the camera in time"
    if not ok:
        code, count = codes[0]
        message = next(e["error"] for e in failed if e["error_code"] == code)
        others = "; also " + ", ".join(f"{c} x{n}" for c, n in codes[1:]) if len(codes) > 1 else ""
        return f"all {len(failed)} requests failed, {count} with {code}: {message}{others}"
    text = f"answered {plural(len(ok), 'frame')}, found nothing"
    leaves_out, lacks = NOTHING_FOUND_HINTS.get(model_id, ("", {}))
    hints = [hint for hint in (leaves_out, lacks.get(footage)) if hint]
    if hints:
        text += ": " + ", and ".join(hints)
    if config:
        text += f" (options here: {', '.join(f'{key}={value}' for key, value in config.items())})"
    if failed:
        text += f"; {plural(len(failed), 'more request')} failed, most with {codes[0][0]}"
    return text


def summary_table(events: list[dict], assignments: list[dict], final_metrics: Optional[str],
                  core_totals: Optional[str], cameras: Optional[list[Camera]] = None,
                  notes: tuple[str, ...] = ()) -> str:
    """The cameras (what each plays, which models it feeds), a row per pair, and why each empty pair is."""
    skipped: dict[tuple[str, str], dict[str, float]] = {}
    if final_metrics:
        snapshot = parse(final_metrics)
        skipped = {key: row.skipped for key, row in snapshot.pairs.items()}
    by_pair: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for event in events:
        by_pair[(event["camera_id"], event["model_id"])].append(event)
    width = max([14, *(len(a["camera"]) for a in assignments)])
    sources = {camera.camera_id: camera.source for camera in cameras or []}
    lines = []
    if cameras:
        lines.append("cameras:")
        for camera in cameras:
            lines.append(f"  {camera.camera_id:<{width}} {camera.description} -> {', '.join(camera.models)}")
        lines.extend(f"  {note}" for note in notes)
        lines.append("")
    lines.append(f"{'camera':<{width}} {'model':<16} {'target':>6} {'fps':>6} {'events':>6} {'errors':>6} "
                 f"{'p50 ms':>7} {'p95 ms':>7} {'det/frm':>7}  skipped")
    empty = []
    for assignment in assignments:
        key = (assignment["camera"], assignment["model"])
        mine = by_pair.get(key, [])
        ok = [e for e in mine if not e["error_code"]]
        stamps = sorted(e["frame_timestamp_ns"] for e in mine)
        fps = (len(stamps) - 1) / ((stamps[-1] - stamps[0]) / 1e9) if len(stamps) > 1 and stamps[-1] > stamps[0] else 0.0
        latencies = np.array([e["latency_ms"] for e in ok]) if ok else np.array([np.nan])
        detections = sum(len(e["detections"]) for e in ok) / len(ok) if ok else 0.0
        skips = ", ".join(f"{r}={int(c)}" for r, c in sorted(skipped.get(key, {}).items()) if c) or "-"
        p50, p95 = (f"{np.percentile(latencies, q):>7.1f}" if ok else f"{'-':>7}" for q in (50, 95))
        lines.append(f"{key[0]:<{width}} {key[1]:<16} {assignment['fps']:>6.1f} {fps:>6.1f} {len(ok):>6} "
                     f"{len(mine) - len(ok):>6} {p50} {p95} {detections:>7.2f}  {skips}")
        camera = sources.get(key[0], "")
        reason = why_nothing(key[1], mine, skipped.get(key), assignment.get("config"),
                             camera if camera == "synthetic" else Path(camera).name)
        if reason:
            empty.append(f"  {key[0]} / {key[1]}: {reason}")
    if empty:
        lines.append("")
        lines.append("found nothing:")
        lines.extend(empty)
    if core_totals:
        lines.append("")
        lines.append(f"core totals (selected = results + errors + dropped): {core_totals}")
    return "\n".join(lines)


# -- the demo ------------------------------------------------------------------------------


@click.command()
@click.option("--duration", default=30.0, show_default=True, help="Seconds to run before the summary.")
@click.option("--cameras", "camera_count", type=click.IntRange(min=1), default=2, show_default=True,
              help="Street cameras playing the footage (the faces camera and the example's camera come on top).")
@click.option("--source", default="auto", show_default=True,
              help="'auto' (vtest.avi if available, else synthetic), 'synthetic', a video file or an image folder.")
@click.option("--camera-fps", default=10.0, show_default=True, help="Frames per second the writer publishes.")
@click.option("--fps", "target_fps", default=2.0, show_default=True,
              help="Target FPS of every (camera, model) pair. 2 is about what a 2-core machine answers "
                   "(fall-detection: ~100 ms a frame on one core, three cameras; face-detection: ~50 ms a "
                   "1280x720 frame, two cameras); on a busy machine some frames are skipped, counted in the summary.")
@click.option("--model", "models", multiple=True, metavar="ID[=DIR]",
              help="Model to run (repeat); ID alone means models/ID or the example model under that id.")
@click.option("--output", default=str(ROOT / "demo-output"), show_default=True, help="Where results go.")
@click.option("--install/--no-install", default=True, show_default=True, help="apt-get install opencv-doc if needed (root only).")
@click.option("--docker", "use_docker", is_flag=True,
              help="Run the models as the images build.sh builds (ruth-ai/<model_id>:TAG) instead of local processes.")
@click.option("--image-tag", default="latest", show_default=True, help="Tag of the model images, with --docker.")
def main(duration: float, camera_count: int, source: str, camera_fps: float, target_fps: float,
         models: tuple[str, ...], output: str, install: bool, use_docker: bool, image_tag: str) -> None:
    """Run the whole pipeline on this machine for DURATION seconds and report what happened."""
    stop = threading.Event()
    interrupted = []

    def on_signal(signum: int, _frame: object) -> None:
        interrupted.append(signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    tag = uuid.uuid4().hex[:6]
    chosen = choose_models(models, use_docker)
    engine = None
    if use_docker:
        try:
            engine = demo_docker.connect()
            demo_docker.check_images(engine, chosen, image_tag)
        except demo_docker.DockerUnavailable as exc:
            raise click.ClickException(str(exc)) from None
    run_dir = Path(tempfile.mkdtemp(prefix=f"ruth-demo-{tag}-", dir="/tmp"))
    out_dir = Path(output) / time.strftime("%Y%m%d-%H%M%S")
    snapshot_dir = out_dir / "snapshots"
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    cameras: list[Camera] = []
    notes: list[str] = []
    say(f"run directory (sockets, registry, logs): {run_dir}")
    say(f"output: {out_dir}")
    processes = Processes(run_dir)
    tail: Optional[EventTail] = None
    assignments: list[dict] = []
    final_metrics: Optional[str] = None
    core_totals: Optional[str] = None
    try:
        footage = find_footage(source, install)
        ready_models: list[str] = []
        daemons = {}
        if engine is not None:
            gid = demo_docker.share_socket_dir(run_dir)
        for model_id, directory in chosen:
            if engine is not None:
                name = f"ruth-demo-{tag}-{model_id}"
                say(f"model {model_id}: container {name} from {demo_docker.image_name(model_id, image_tag)}")
                daemons[model_id] = processes.adopt(
                    demo_docker.run_model(engine, model_id, image_tag, run_dir, gid, name))
                continue
            daemons[model_id] = processes.start(f"model-{model_id}", ruth_model(
                "serve", str(directory), "--model-id", model_id, "--socket-dir", str(run_dir)))
        for model_id, child in daemons.items():
            if wait_ready(child, socket_path(model_id, str(run_dir)), stop):
                ready_models.append(model_id)
                say(f"model {model_id}: READY")
            elif not stop.is_set():
                say(f"model {model_id}: did not start; leaving it out. Its log:\n{child.tail()}")
                child.stop()
        if stop.is_set():
            return
        if not ready_models:
            raise click.ClickException("no model daemon started; see the logs above")
        synthetic_only = frozenset(m for m, directory in chosen if directory == EXAMPLE_MODEL_DIR)
        slideshow = None
        if any(m in FACES_MODELS for m in ready_models):
            photos = assemble_slideshow(run_dir / "faces")
            if photos:
                slideshow = run_dir / "faces"
                notes.append(f"faces photos: {', '.join(p.name for p in photos)}")
        cameras = plan_cameras(ready_models, footage, camera_count, tag, synthetic_only, slideshow, camera_fps)
        for camera in cameras:
            say(f"camera {camera.camera_id}: {camera.description} -> {', '.join(camera.models)}")
        if notes:
            say(notes[0])
        start_writers(processes, cameras, camera_fps)
        registry_path = run_dir / "registry.sqlite3"
        with ModelRegistry(registry_path) as registry:
            for model_id in ready_models:
                entry = registry.import_from_daemon(socket_path(model_id, str(run_dir)))
                say(f"registry: {entry.model_id} {entry.current_version} imported from its describe op")
        assignments = plan_assignments(cameras, target_fps)
        assignments_path = run_dir / "assignments.yaml"
        assignments_path.write_text(yaml.safe_dump({"assignments": assignments}))
        port = free_port()
        metrics_url = f"http://127.0.0.1:{port}/metrics"
        events_path = out_dir / "events.jsonl"
        core = processes.start("core", [
            sys.executable, "-m", "ruth_ai_core.cli", "run", "--assignments", str(assignments_path),
            "--registry", str(registry_path), "--events", str(events_path), "--socket-dir", str(run_dir),
            "--metrics-port", str(port)])
        tail = EventTail(events_path, snapshot_dir)
        live(core, metrics_url, tail, duration, stop)
        try:
            final_metrics = fetch(metrics_url)
        except StatusUnavailable:
            final_metrics = None
        core.stop()
        core_totals = next((line.split("stopped: ", 1)[1] for line in core.log_path.read_text().splitlines()
                            if "stopped: " in line), None)
        tail.poll()
    finally:
        processes.stop_all()
        if tail is not None:
            tail.close()
        leftovers = cleanup(run_dir, [camera.camera_id for camera in cameras])
    if assignments and tail is not None:
        table = summary_table(tail.events, assignments, final_metrics, core_totals, cameras, tuple(notes))
        (out_dir / "summary.txt").write_text(table + "\n")
        click.echo("\n" + table)
        shots = sum(len(v) for v in tail.snapshots.values())
        click.echo(f"\nevents: {out_dir / 'events.jsonl'} ({len(tail.events)} lines)")
        click.echo(f"snapshots: {snapshot_dir} ({shots} annotated frames)")
        click.echo(f"summary: {out_dir / 'summary.txt'}")
    if leftovers:
        say(f"removed leftovers: {', '.join(leftovers)}")
    say("clean: no demo process, socket or shared-memory segment left")
    if interrupted:
        sys.exit(130)


def start_writers(processes: Processes, cameras: list[Camera], camera_fps: float) -> None:
    """One ``write-frames`` per source (with its size and hold), writing every camera that plays it."""
    groups: dict[tuple[str, Optional[tuple[int, int]], int], list[Camera]] = defaultdict(list)
    for camera in cameras:
        groups[(camera.source, camera.size, camera.hold)].append(camera)
    for (source, size, hold), group in groups.items():
        size_args = ["--width", str(size[0]), "--height", str(size[1])] if size else []
        hold_args = ["--hold", str(hold)] if hold > 1 else []
        say(f"footage: {source} -> {', '.join(c.camera_id for c in group)} at {camera_fps:g} fps")
        processes.start(f"writer-{group[0].kind}", ruth_model(
            "write-frames", *sum((["--camera", c.camera_id] for c in group), []), "--source", source,
            "--fps", str(camera_fps), "--slots", "32", *size_args, *hold_args))


def live(core: Child, metrics_url: str, tail: EventTail, duration: float, stop: threading.Event) -> None:
    """Redraw the core's status once a second until the time is up, Ctrl-C, or the core dies."""
    started = time.monotonic()
    previous = None
    interactive = sys.stdout.isatty()
    last_print = 0.0
    while not stop.wait(1.0):
        elapsed = time.monotonic() - started
        if not core.alive():
            say(f"the core exited early:\n{core.tail()}")
            return
        tail.poll()
        try:
            current = parse(fetch(metrics_url, timeout_s=1.0))
        except StatusUnavailable:
            continue
        table = render(current, previous)
        previous = current
        header = f"live, {elapsed:4.0f}/{duration:.0f} s (Ctrl-C stops early)"
        if interactive:
            click.echo("\x1b[H\x1b[J" + header + "\n" + table)
        elif elapsed - last_print >= 5.0:
            click.echo(header + "\n" + table + "\n")
            last_print = elapsed
        if elapsed >= duration:
            return


def cleanup(run_dir: Path, cameras: list[str]) -> list[str]:
    """Remove what a crashed child could have left; returns what had to be removed."""
    leftovers = []
    for camera in cameras:
        path = Path("/dev/shm") / segment_name(camera)[1:]
        if path.exists():
            path.unlink()
            leftovers.append(str(path))
    leftovers += [str(p) for p in run_dir.glob("*.sock")]
    shutil.rmtree(run_dir, ignore_errors=True)
    return leftovers


if __name__ == "__main__":
    main()
