"""Helpers of the core suite: a background VAS writer, waiting, and reading events back."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Optional, Sequence

from ruth_model_tools.frame_writer import publish

SLOW_HANDLER = """
import time
from ai_model_container import Detection, InferenceHandler

class Handler(InferenceHandler):
    def preprocess(self, frame, request):
        return float(request.config.get("sleep_s", 0.3))

    def infer(self, inputs):
        time.sleep(inputs)
        return inputs

    def postprocess(self, outputs, inputs, frame, request):
        return []
"""


class Publisher:
    """Acts as VAS in a thread: synthetic frames into real rings; segments removed on stop."""

    def __init__(self, cameras: Sequence[str], fps: float = 25.0, width: int = 640, height: int = 480,
                 slots: int = 8) -> None:
        self.cameras = list(cameras)
        self.stop_event = threading.Event()
        self.written: dict[str, int] = {}
        self._thread = threading.Thread(target=self._run, args=(fps, width, height, slots), daemon=True)

    def _run(self, fps: float, width: int, height: int, slots: int) -> None:
        self.written = publish(self.cameras, "synthetic", fps, width, height, slots, None, self.stop_event)

    def start(self) -> "Publisher":
        self._thread.start()
        return self

    def stop(self) -> dict[str, int]:
        self.stop_event.set()
        self._thread.join(10)
        return self.written


def read_events(path: Path, camera: Optional[str] = None, model: Optional[str] = None) -> list[dict]:
    if not path.exists():
        return []
    events = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [e for e in events if (camera is None or e["camera_id"] == camera) and (model is None or e["model_id"] == model)]
