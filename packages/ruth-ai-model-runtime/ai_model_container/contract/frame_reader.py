"""Read-only, zero-copy access to frames in a camera's shared-memory ring.

The reader maps each camera's segment once with PROT_READ, so nothing in this
process can write through it (a write raises instead of corrupting VAS's
buffer). A frame is handed to a callback as a read-only numpy view straight
into the mapping; the callback converts it into the model's input, and only
then does the reader check the slot's seqlock. If the writer touched the slot
in the meantime the result is thrown away and the request fails with
FRAME_EXPIRED: dropped frames are normal, retries are the caller's business.

Mappings are cached per camera and reopened when the segment is replaced
(unlinked and created again, for example after a resolution change) or
removed. A mapping is trusted for ``revalidate_s`` (50 ms) before its segment
is ``stat``-ed again, and at once whenever a request fails against it, so a
replacement is noticed on the first request it matters to, and the hot path
makes no system call (each one hands the GIL to another thread under load).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional, TypeVar

import numpy as np

from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.schema import ErrorCode, FrameMetadata
from ai_model_container.contract.shm_layout import (
    HEADER_SIZE,
    LAST_FRAME_ID_OFFSET,
    PIXEL_FORMAT_NV12,
    SHM_DIR,
    LayoutError,
    SegmentHeader,
    SlotRecord,
    camera_id_from_reference,
    read_u64,
    segment_name,
)

T = TypeVar("T")

DEFAULT_MAX_CAMERAS = 4096
"""Rings kept mapped at once; beyond this the least recently used is unmapped (a mapping costs address
space, not memory: its pages are the writer's)."""
DEFAULT_REVALIDATE_S = 0.05
"""How long a mapping is used without checking that its segment is still the one in /dev/shm."""


@dataclass(slots=True)
class FrameView:
    """One frame as a read-only view into shared memory.

    Valid only inside the callback it was passed to: after that the writer may
    reuse the slot. Convert or copy what you need before returning. Treat it as
    read-only (it is a plain slotted class because one is built per request).
    """

    camera_id: str
    frame_id: int
    timestamp_ns: int
    width: int
    height: int
    nv12: np.ndarray
    """Shape (height * 3 / 2, width), uint8, rows ``stride`` bytes apart."""

    @property
    def y(self) -> np.ndarray:
        """The luma plane, shape (height, width)."""
        return self.nv12[: self.height]

    @property
    def uv(self) -> np.ndarray:
        """The interleaved chroma plane, shape (height / 2, width)."""
        return self.nv12[self.height:]

    def to_bgr(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Convert to a BGR image (height, width, 3), the one copy the model needs."""
        import cv2  # the model side has OpenCV; Ruth AI Core reads headers only and never loads it

        return cv2.cvtColor(self.nv12, cv2.COLOR_YUV2BGR_NV12, dst=out)

    def to_rgb(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Convert to an RGB image (height, width, 3)."""
        import cv2

        return cv2.cvtColor(self.nv12, cv2.COLOR_YUV2RGB_NV12, dst=out)


def open_ring(path: str) -> int:
    """Open a ring read-only without ever blocking or following a link; the caller closes the descriptor.

    ``/dev/shm`` is writable by every local user, so what sits at a ring's path may be a FIFO
    (a plain open would block until someone writes to it), a symlink to anything, a device or
    a directory. O_NONBLOCK makes the open itself return at once, O_NOFOLLOW refuses a link,
    and only a regular file is accepted.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LayoutError("the ring's path is a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise LayoutError("the ring's path is not a regular file")
    return fd


class _Mapping:
    """One camera's segment mapped read-only, with the header it was validated against."""

    def __init__(self, path: str) -> None:
        fd = open_ring(path)
        try:
            info = os.fstat(fd)
            self.identity = (info.st_ino, info.st_size)
            if info.st_size == 0:
                raise LayoutError("the segment is empty")
            if info.st_size < HEADER_SIZE:
                raise LayoutError(f"the segment has {info.st_size} bytes, less than the {HEADER_SIZE}-byte header")
            self.buffer = mmap.mmap(fd, info.st_size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        self.header = SegmentHeader.unpack(self.buffer)
        self.header.validate(info.st_size)
        self.checked_at = time.monotonic()
        header = self.header
        # One read-only view per slot, made once: building an ndarray on the mapping
        # costs more than the rest of a frame lookup.
        self.slot_views = [
            np.ndarray(shape=(header.height * 3 // 2, header.width), dtype=np.uint8, buffer=self.buffer,
                       offset=header.pixels_offset(slot), strides=(header.stride, 1))
            for slot in range(header.slot_count)
        ]


class NewestFrame(NamedTuple):
    header: SegmentHeader
    """The segment's geometry; its last_frame_id is the one seen at mapping time, not the newest."""
    frame_id: int
    timestamp_ns: int


class FrameReader:
    """Resolves frame references to frames; safe to share between threads."""

    def __init__(self, shm_dir: str = SHM_DIR, max_cameras: int = DEFAULT_MAX_CAMERAS,
                 revalidate_s: float = DEFAULT_REVALIDATE_S) -> None:
        self._shm_dir = shm_dir.rstrip("/")
        self._max_cameras = max_cameras
        self._revalidate_s = revalidate_s
        self._mappings: "OrderedDict[str, _Mapping]" = OrderedDict()
        self._lock = threading.Lock()

    def read(self, reference: str, expected: FrameMetadata, consume: Callable[[FrameView], T]) -> T:
        """Pass frame ``expected.frame_id`` of the referenced camera to ``consume``.

        Returns what ``consume`` returned, once the seqlock proves the slot was
        not rewritten while it ran. Raises RequestError with FRAME_INVALID,
        FRAME_NOT_FOUND or FRAME_EXPIRED.
        """
        camera_id = camera_id_from_reference(reference)
        if camera_id is None:
            raise RequestError(ErrorCode.FRAME_INVALID, f"{reference!r} is not /dev/shm/vas_frames_<camera_id>")
        return self.read_camera(camera_id, expected, consume)

    def read_camera(self, camera_id: str, expected: FrameMetadata, consume: Callable[[FrameView], T]) -> T:
        """``read`` for a camera id already known to be valid (the schema checked it)."""
        mapping, fresh = self._mapping(camera_id)
        try:
            return self._read_frame(mapping, camera_id, expected, consume)
        except RequestError:
            if fresh:
                raise
            # Failed against a mapping trusted without a stat: was the segment replaced?
            current, _ = self._mapping(camera_id, revalidate=True)
            if current is mapping:
                raise
        return self._read_frame(current, camera_id, expected, consume)

    @staticmethod
    def _read_frame(mapping: "_Mapping", camera_id: str, expected: FrameMetadata, consume: Callable[[FrameView], T]) -> T:
        header, buffer = mapping.header, mapping.buffer
        if (header.width, header.height) != (expected.width, expected.height):
            raise RequestError(
                ErrorCode.FRAME_INVALID,
                f"camera {camera_id} exports {header.width}x{header.height}, "
                f"the request says {expected.width}x{expected.height}",
            )
        frame_id = expected.frame_id
        newest = read_u64(buffer, LAST_FRAME_ID_OFFSET)
        if frame_id > newest:
            raise RequestError(ErrorCode.FRAME_NOT_FOUND, f"frame {frame_id} of camera {camera_id} is not written yet (newest {newest})")
        slot = header.slot_index(frame_id)
        record_offset = header.record_offset(slot)
        record = SlotRecord.unpack(buffer, record_offset)
        if record.seq % 2 == 1 or record.frame_id != frame_id:
            raise RequestError(ErrorCode.FRAME_EXPIRED, f"frame {frame_id} of camera {camera_id} was overwritten")
        if (record.width, record.height, record.stride, record.pixel_format) != (
            header.width, header.height, header.stride, PIXEL_FORMAT_NV12
        ):
            raise RequestError(ErrorCode.FRAME_INVALID, f"slot {slot} of camera {camera_id} disagrees with the segment header")
        view = FrameView(camera_id, frame_id, record.timestamp_ns, header.width, header.height, mapping.slot_views[slot])
        result = consume(view)
        if read_u64(buffer, record_offset) != record.seq:
            raise RequestError(ErrorCode.FRAME_EXPIRED, f"frame {frame_id} of camera {camera_id} was overwritten during the read")
        return result

    def newest_frame(self, camera_id: str) -> "NewestFrame":
        """The newest frame id and its capture time, read from the header and its slot record, no pixels.

        Cheap enough for watchers that poll many times a second (Ruth AI Core's agents). Same
        seqlock as ``read``: a slot being rewritten, or rewritten during this read, gives
        ``timestamp_ns`` 0 (poll again). ``frame_id`` is 0 while nothing has been written.
        Raises RequestError FRAME_NOT_FOUND or FRAME_INVALID like ``read``.
        """
        mapping, _ = self._mapping(camera_id)
        header, buffer = mapping.header, mapping.buffer
        frame_id = read_u64(buffer, LAST_FRAME_ID_OFFSET)
        if frame_id == 0:
            return NewestFrame(header, 0, 0)
        offset = header.record_offset(header.slot_index(frame_id))
        record = SlotRecord.unpack(buffer, offset)
        if record.seq % 2 == 1 or record.frame_id != frame_id or read_u64(buffer, offset) != record.seq:
            return NewestFrame(header, frame_id, 0)
        return NewestFrame(header, frame_id, record.timestamp_ns)

    def _mapping(self, camera_id: str, revalidate: bool = False) -> tuple[_Mapping, bool]:
        """The camera's mapping, and whether its segment was checked by this call."""
        mapping = self._mappings.get(camera_id)
        now = time.monotonic()
        if mapping is not None and not revalidate and now - mapping.checked_at < self._revalidate_s:
            return mapping, False
        try:
            info = os.stat(self._shm_dir + segment_name(camera_id))
        except FileNotFoundError:
            self._forget(camera_id)
            raise RequestError(ErrorCode.FRAME_NOT_FOUND, f"camera {camera_id} has no frame segment") from None
        with self._lock:
            mapping = self._mappings.get(camera_id)
            if mapping is not None and mapping.identity == (info.st_ino, info.st_size):
                mapping.checked_at = now
                self._mappings.move_to_end(camera_id)
                return mapping, True
            # New camera, or the segment was replaced: map the current one. The old
            # mapping is unmapped once the last in-flight reader drops its views.
            self._mappings.pop(camera_id, None)
            try:
                mapping = _Mapping(self._shm_dir + segment_name(camera_id))
            except FileNotFoundError:
                raise RequestError(ErrorCode.FRAME_NOT_FOUND, f"camera {camera_id} has no frame segment") from None
            except PermissionError:
                raise RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: no read permission on its segment") from None
            except LayoutError as exc:
                raise RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: {exc}") from None
            self._mappings[camera_id] = mapping
            self._mappings.move_to_end(camera_id)
            while len(self._mappings) > self._max_cameras:
                self._mappings.popitem(last=False)
            return mapping, True

    def _forget(self, camera_id: str) -> None:
        with self._lock:
            self._mappings.pop(camera_id, None)

    @property
    def cached_cameras(self) -> list[str]:
        with self._lock:
            return list(self._mappings)
