"""Frame section: acquiring a 1920x1080 NV12 frame through the runtime, against bare OpenCV.

Ours: FrameReader.read on a real shared-memory ring written by the reference
writer (reference check, cached mapping, header and slot checks, seqlock
before and after) with FrameView.to_bgr converting straight from the
read-only mapping into a reused buffer. Reference: cv2.cvtColor on an NV12
array already in private memory, into a reused buffer. Blocks of each
alternate so drift on a shared machine hits both alike.
"""

from __future__ import annotations

import time
import uuid
from statistics import median
from typing import Callable

import cv2
import numpy as np

from ai_model_container.contract.frame_reader import FrameReader, FrameView
from ai_model_container.contract.schema import FrameMetadata
from ai_model_container.contract.shm_layout import segment_reference
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

from .options import Options
from .payload import FRAME_HEIGHT, FRAME_WIDTH
from .table import Row, SectionResult, Target

SECTION = "frames"
BLOCK = 20
"""Calls per timed block; blocks of the two candidates alternate."""


def run(options: Options) -> SectionResult:
    blocks = int(options.scaled(15, 5))
    camera_id = f"bench_frames_{uuid.uuid4().hex[:8]}"
    with FrameWriter(camera_id, FRAME_WIDTH, FRAME_HEIGHT, slot_count=2) as writer:
        frame_id = writer.write_bgr(synthetic_scene(3, FRAME_WIDTH, FRAME_HEIGHT)[0])
        in_memory = np.array(writer.slot_pixels(frame_id))
        reader = FrameReader()
        reference = segment_reference(camera_id)
        metadata = FrameMetadata(frame_id=frame_id, width=FRAME_WIDTH, height=FRAME_HEIGHT)
        ours_out = np.empty((FRAME_HEIGHT, FRAME_WIDTH, 3), dtype=np.uint8)
        bare_out = np.empty_like(ours_out)

        def convert(view: FrameView) -> np.ndarray:
            return view.to_bgr(ours_out)

        def acquire() -> None:
            reader.read(reference, metadata, convert)

        def bare() -> None:
            cv2.cvtColor(in_memory, cv2.COLOR_YUV2BGR_NV12, dst=bare_out)

        acquire()
        bare()
        if not np.array_equal(ours_out, bare_out):
            raise RuntimeError("the runtime's conversion differs from cv2.cvtColor on the same frame")
        candidates = {"ours": acquire, "bare": bare}
        medians: dict[str, list[float]] = {name: [] for name in candidates}
        for repeat in range(options.repeats):
            names = list(candidates) if repeat % 2 == 0 else list(reversed(candidates))
            calls: dict[str, list[float]] = {name: [] for name in names}
            for _ in range(blocks):
                for name in names:
                    calls[name].extend(_timed(candidates[name], BLOCK))
            for name in names:
                medians[name].append(median(calls[name]))
    threads = cv2.getNumThreads()
    return SectionResult(
        [Row(SECTION, "1080p NV12: read + seqlock + to BGR", "us", median(medians["ours"]), median(medians["bare"]),
             "bare cv2.cvtColor", Target("lower", 1.10))],
        [f"frames: OpenCV {cv2.__version__}, {threads} threads; {options.repeats} x {blocks} blocks of {BLOCK} calls each"],
    )


def _timed(function: Callable[[], None], count: int) -> list[float]:
    """Microseconds of each of ``count`` calls."""
    clock = time.perf_counter_ns
    samples = []
    for _ in range(count):
        started = clock()
        function()
        samples.append((clock() - started) / 1000.0)
    return samples
