"""The reference VAS exporter: writes NV12 frames into a camera's ring.

VAS owns the real writer; this one follows the same layout and seqlock
protocol (shm_layout) so tests, benchmarks and the demo can feed the runtime
real pixels: frames from a video file, a directory of images, or a synthetic
scene whose ground truth is known.

Writing frame f: slot = (f - 1) % slot_count; seq += 1 (odd: readers back
off), write the pixels and the slot record, seq += 1 (even), then publish
last_frame_id = f. The writer never waits for readers.
"""

from __future__ import annotations

import mmap
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Sequence

import cv2
import numpy as np
import posix_ipc

from ai_model_container.contract.shm_layout import (
    LAST_FRAME_ID_OFFSET,
    PIXEL_FORMAT_NV12,
    SegmentHeader,
    SlotRecord,
    read_u64,
    segment_name,
    write_u64,
)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".tif", ".tiff"}


class FrameWriter:
    """Creates a camera's ring and publishes frames into it.

    Creating replaces any segment of the same name, the way VAS does when a
    camera restarts or changes resolution; readers notice and remap.
    """

    def __init__(self, camera_id: str, width: int, height: int, slot_count: int = 8,
                 stride: Optional[int] = None, mode: int = 0o644) -> None:
        self.camera_id = camera_id
        self.header = SegmentHeader.plan(width, height, slot_count, stride)
        name = segment_name(camera_id)
        try:
            posix_ipc.unlink_shared_memory(name)
        except posix_ipc.ExistentialError:
            pass
        shm = posix_ipc.SharedMemory(name, posix_ipc.O_CREX, mode=mode, size=self.header.total_size)
        try:
            os.fchmod(shm.fd, mode)  # shm_open applies the umask; VAS sets the mode it means.
            self._buffer = mmap.mmap(shm.fd, self.header.total_size)
        finally:
            shm.close_fd()
        self.header.pack_into(self._buffer)
        self.last_frame_id = 0
        self._closed = False

    @property
    def width(self) -> int:
        return self.header.width

    @property
    def height(self) -> int:
        return self.header.height

    def slot_pixels(self, frame_id: int) -> np.ndarray:
        """Writable NV12 view (height * 3 / 2, width) of the slot frame ``frame_id`` goes to."""
        header = self.header
        return np.ndarray(
            shape=(header.height * 3 // 2, header.width), dtype=np.uint8, buffer=self._buffer,
            offset=header.pixels_offset(header.slot_index(frame_id)), strides=(header.stride, 1),
        )

    def write_nv12(self, nv12: np.ndarray, timestamp_ns: Optional[int] = None) -> int:
        """Publish one NV12 frame of shape (height * 3 / 2, width); returns its frame id."""
        frame_id = self.last_frame_id + 1
        with self._slot(frame_id, timestamp_ns) as pixels:
            pixels[...] = nv12
        return frame_id

    def write_bgr(self, bgr: np.ndarray, timestamp_ns: Optional[int] = None) -> int:
        """Convert a BGR image of the ring's size to NV12 in place and publish it."""
        frame_id = self.last_frame_id + 1
        with self._slot(frame_id, timestamp_ns) as pixels:
            bgr_to_nv12(bgr, out=pixels)
        return frame_id

    def advance(self, timestamp_ns: Optional[int] = None) -> int:
        """Publish the next frame id with whatever pixels its slot holds: the ring protocol without the copy.

        For load tests of readers (Ruth AI Core at fleet scale), where what matters is the
        header, the slot record and the seqlock, and writing pixels would cost the writer more
        than the readers it is meant to load.
        """
        frame_id = self.last_frame_id + 1
        with self._slot(frame_id, timestamp_ns):
            pass
        return frame_id

    def _slot(self, frame_id: int, timestamp_ns: Optional[int]) -> "_SlotWrite":
        return _SlotWrite(self, frame_id, time.time_ns() if timestamp_ns is None else timestamp_ns)

    def _commit(self, frame_id: int) -> None:
        self.last_frame_id = frame_id
        write_u64(self._buffer, LAST_FRAME_ID_OFFSET, frame_id)

    def close(self, unlink: bool = True) -> None:
        """Unmap the ring and (by default) remove the segment."""
        if self._closed:
            return
        self._closed = True
        self._buffer.close()
        if unlink:
            try:
                posix_ipc.unlink_shared_memory(segment_name(self.camera_id))
            except posix_ipc.ExistentialError:
                pass

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _SlotWrite:
    """The seqlock bracket around writing one slot."""

    def __init__(self, writer: FrameWriter, frame_id: int, timestamp_ns: int) -> None:
        self.writer = writer
        self.frame_id = frame_id
        self.timestamp_ns = timestamp_ns
        header = writer.header
        self.record_offset = header.record_offset(header.slot_index(frame_id))

    def __enter__(self) -> np.ndarray:
        buffer = self.writer._buffer
        current = read_u64(buffer, self.record_offset)
        self.seq = current + 1 if current % 2 == 0 else current + 2  # odd: writing
        write_u64(buffer, self.record_offset, self.seq)
        return self.writer.slot_pixels(self.frame_id)

    def __exit__(self, exc_type: object, *rest: object) -> None:
        writer, header = self.writer, self.writer.header
        if exc_type is not None:
            # Leave the slot odd-then-even but empty so no reader trusts half a frame.
            SlotRecord(self.seq + 1, 0, 0, header.width, header.height, header.stride,
                       PIXEL_FORMAT_NV12).pack_into(writer._buffer, self.record_offset)
            return
        SlotRecord(self.seq, self.frame_id, self.timestamp_ns, header.width, header.height,
                   header.stride, PIXEL_FORMAT_NV12).pack_into(writer._buffer, self.record_offset)
        write_u64(writer._buffer, self.record_offset, self.seq + 1)
        writer._commit(self.frame_id)


def bgr_to_nv12(bgr: np.ndarray, out: Optional[np.ndarray] = None) -> np.ndarray:
    """Convert a BGR image with even sides to NV12 (height * 3 / 2, width)."""
    height, width = bgr.shape[:2]
    i420 = cv2.cvtColor(bgr, cv2.COLOR_BGR2YUV_I420)
    if out is None:
        out = np.empty((height * 3 // 2, width), dtype=np.uint8)
    out[:height] = i420[:height]
    quarter = (height // 2) * (width // 2)
    chroma = i420[height:].reshape(-1)
    uv = out[height:]
    uv[:, 0::2] = chroma[:quarter].reshape(height // 2, width // 2)
    uv[:, 1::2] = chroma[quarter:].reshape(height // 2, width // 2)
    return out


@dataclass(frozen=True)
class SyntheticBox:
    x_min: int
    y_min: int
    x_max: int
    y_max: int


def synthetic_scene(index: int, width: int, height: int, objects: int = 2) -> tuple[np.ndarray, list[SyntheticBox]]:
    """A dark gradient with ``objects`` bright rectangles that move with ``index``.

    Returns the BGR image and the rectangles drawn, so tests and the demo know
    the ground truth.
    """
    gradient = np.linspace(20, 70, width, dtype=np.float32).astype(np.uint8)
    image = np.repeat(np.repeat(gradient[None, :, None], height, axis=0), 3, axis=2)
    box_w, box_h = max(width // 8, 4), max(height // 6, 4)
    boxes = []
    for k in range(objects):
        span_x = max(width - box_w, 1)
        x = (index * (7 + 5 * k) + k * width // max(objects, 1)) % span_x
        y = (height // (objects + 1)) * (k + 1) - box_h // 2
        y = min(max(y, 0), height - box_h)
        box = SyntheticBox(x, y, x + box_w, y + box_h)
        cv2.rectangle(image, (box.x_min, box.y_min), (box.x_max - 1, box.y_max - 1), (235, 235, 235), thickness=-1)
        boxes.append(box)
    return image, boxes


def frames_from_source(source: str, width: int, height: int, hold: int = 1) -> Iterator[np.ndarray]:
    """Endless BGR frames of ``width`` x ``height`` from a source.

    ``source`` is ``synthetic``, a video file (looped) or a directory of images (cycled in name
    order, each image for ``hold`` frames in a row: a slideshow a person can follow).
    """
    if hold < 1:
        raise ValueError(f"hold must be at least 1 frame, not {hold}")
    if source == "synthetic":
        index = 0
        while True:
            yield synthetic_scene(index, width, height)[0]
            index += 1
    path = Path(source)
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        loaded = [cv2.imread(str(p), cv2.IMREAD_COLOR) for p in images]
        loaded = [_fit(img, width, height) for img in loaded if img is not None]
        if not loaded:
            raise ValueError(f"no readable images in {path}")
        while True:
            for image in loaded:
                for _ in range(hold):
                    yield image
    if not path.is_file():
        raise ValueError(f"source {source!r} is neither 'synthetic', a directory nor a video file")
    while True:
        capture = cv2.VideoCapture(str(path))
        produced = 0
        try:
            while True:
                ok, image = capture.read()
                if not ok:
                    break
                produced += 1
                yield _fit(image, width, height)
        finally:
            capture.release()
        if produced == 0:
            raise ValueError(f"could not decode any frame from {path}")


def probe_size(source: str) -> tuple[int, int]:
    """Native (width, height) of a source rounded down to even numbers; 1280x720 for synthetic."""
    if source == "synthetic":
        return 1280, 720
    path = Path(source)
    if path.is_dir():
        for candidate in sorted(path.iterdir()):
            image = cv2.imread(str(candidate), cv2.IMREAD_COLOR) if candidate.suffix.lower() in IMAGE_SUFFIXES else None
            if image is not None:
                return image.shape[1] // 2 * 2, image.shape[0] // 2 * 2
        raise ValueError(f"no readable images in {path}")
    capture = cv2.VideoCapture(str(path))
    try:
        ok, image = capture.read()
    finally:
        capture.release()
    if not ok:
        raise ValueError(f"could not decode any frame from {path}")
    return image.shape[1] // 2 * 2, image.shape[0] // 2 * 2


def _fit(image: np.ndarray, width: int, height: int) -> np.ndarray:
    if image.shape[1] == width and image.shape[0] == height:
        return image
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def publish(cameras: Sequence[str], source: str, fps: float, width: int, height: int, slot_count: int = 8,
            duration_s: Optional[float] = None, stop: Optional[threading.Event] = None,
            hold: int = 1) -> dict[str, int]:
    """Write frames from ``source`` to every camera at ``fps`` until ``duration_s`` or ``stop``.

    ``hold`` is frames_from_source's: how many frames each image of a directory stays on.

    Frames are scheduled against the start time, not by sleeping a fixed
    period, so the rate does not drift. Segments are removed on the way out,
    whatever ends the loop. Returns the number of frames written per camera.
    """
    stop = stop or threading.Event()
    writers = []
    try:
        for camera_id in cameras:
            writers.append(FrameWriter(camera_id, width, height, slot_count))
        sources = [frames_from_source(source, width, height, hold) for _ in writers]
        for offset, frames in enumerate(sources):  # cameras on one source show different moments
            for _ in range(offset * 7):
                next(frames)
        start = time.monotonic()
        index = 0
        while not stop.is_set():
            if duration_s is not None and time.monotonic() - start >= duration_s:
                break
            for writer, frames in zip(writers, sources):
                writer.write_bgr(next(frames))
            index += 1
            stop.wait(max(0.0, start + index / fps - time.monotonic()))
        return {writer.camera_id: writer.last_frame_id for writer in writers}
    finally:
        for writer in writers:
            writer.close()
