"""Read-only, zero-copy access to frames in a camera's shared-memory ring.

The reader maps each camera's segment once with PROT_READ, so nothing in this
process can write through it (a write raises instead of corrupting VAS's
buffer). A frame is handed to a callback as a read-only numpy view straight
into the mapping; the callback converts it into the model's input, and only
then does the reader check the slot's seqlock. If the writer touched the slot
in the meantime the result is thrown away and the request fails with
FRAME_EXPIRED: dropped frames are normal, retries are the caller's business.

Whatever sits at a ring's path, and whatever happens to it later, costs one
request a RequestError and never the process (CONTRACT.md, "Reader protocol"):

- Only a regular file is opened (``lstat`` first, then ``O_NOFOLLOW | O_NONBLOCK``
  and ``fstat``): a FIFO, socket, device, directory or symbolic link is
  FRAME_INVALID without ever blocking in ``open``, and no lock is held while
  a ring is opened or mapped.
- The header is read with ``pread`` and validated before anything is mapped,
  and only the layout's own extent is mapped, never the file's size: a
  sparse 1 PiB file costs nothing.
- Touching a page past a file's end raises SIGBUS, which kills the process.
  ``newest_frame`` (all Ruth AI Core reads) never maps a ring: it reads the
  header and the slot record with ``pread`` on the ring's descriptor, which
  comes back short instead. ``read`` maps the layout for its pixels, and before
  every read ``fstat``s the mapping's descriptor (``mmap.size``: one system
  call, no path lookup); a ring that shrank below its layout is FRAME_INVALID.
  What is left is a writer truncating its ring while a model reads its pixels;
  only a process allowed to write the ring can do that, and the reader refuses
  rings that every user may write.

Mappings are cached per camera and reopened when the segment is replaced
(unlinked and created again, for example after a resolution change) or
removed. A mapping is trusted for ``revalidate_s`` (50 ms) before its path is
``lstat``-ed again, and at once whenever a request fails against it, so a
replacement is noticed on the first request it matters to, and the hot path
makes no path lookup (each one hands the GIL to another thread under load).
"""

from __future__ import annotations

import errno
import mmap
import os
import stat
import threading
import time
import weakref
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
    SLOT_META_SIZE,
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
    (a plain open would block until someone writes to it), a symlink to anything, a socket, a
    device or a directory. The path is ``lstat``-ed first so nothing but a regular file is ever
    opened; O_NONBLOCK and O_NOFOLLOW cover a swap between the lstat and the open, and ``fstat``
    confirms what was opened. A ring every user may write is refused as well: any of them could
    truncate it under a reader's feet.
    """
    _require_regular(os.lstat(path).st_mode)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LayoutError("the ring's path is a symbolic link") from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        _require_regular(mode)
        if mode & stat.S_IWOTH:
            raise LayoutError(f"the ring is writable by every user (mode {stat.S_IMODE(mode):04o}); "
                              "VAS creates rings 0644 or 0640")
    except BaseException:
        os.close(fd)
        raise
    return fd


_KINDS = (
    (stat.S_ISLNK, "a symbolic link"), (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
)


def _require_regular(mode: int) -> None:
    if stat.S_ISREG(mode):
        return
    kind = next((name for test, name in _KINDS if test(mode)), "of another kind")
    raise LayoutError(f"the ring's path is {kind}, not a regular file")


class _Shrunk(Exception):
    """A read through a ring's descriptor came back short: the file is smaller than its layout now."""


class _Mapping:
    """One camera's ring: an open descriptor, the header it was validated against, and, once a
    reader needs pixels, a read-only mapping of exactly the layout's bytes.

    The header is read with ``pread`` and validated before anything is mapped, so a hostile
    file size never becomes a mapping size. The descriptor stays open for the object's lifetime
    (``newest_frame`` reads through it with ``pread``, which returns short past the file's end
    where a mapping would raise SIGBUS); the mmap object keeps its own duplicate, so
    ``buffer.size()`` is an ``fstat`` of the very file mapped, whatever has happened to its path.
    """

    def __init__(self, path: str) -> None:
        fd = open_ring(path)
        try:
            info = os.fstat(fd)
            if info.st_size == 0:
                raise LayoutError("the segment is empty")
            if info.st_size < HEADER_SIZE:
                raise LayoutError(f"the segment has {info.st_size} bytes, less than the {HEADER_SIZE}-byte header")
            raw = os.pread(fd, HEADER_SIZE, 0)
            if len(raw) < HEADER_SIZE:
                raise LayoutError(f"the segment shrank to {len(raw)} bytes while being opened")
            header = SegmentHeader.unpack(raw)
            header.validate(info.st_size)
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        weakref.finalize(self, os.close, fd)
        self.identity = (info.st_dev, info.st_ino, info.st_size)
        self.header = header
        self.needed = header.total_size
        """Bytes the file must still have for every access through the mapping to be safe."""
        self.checked_at = time.monotonic()
        self.buffer: Optional[mmap.mmap] = None
        self.slot_views: list[np.ndarray] = []

    def map_pixels(self) -> mmap.mmap:
        """The read-only mapping of the layout, made on first use: only readers of pixels need it.

        Two threads may both map a new ring at once; each mapping is valid and one of them stays.
        """
        if self.buffer is None:
            header = self.header
            buffer = mmap.mmap(self.fd, self.needed, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
            # One read-only view per slot, made once: building an ndarray on the mapping
            # costs more than the rest of a frame lookup.
            self.slot_views = [
                np.ndarray(shape=(header.height * 3 // 2, header.width), dtype=np.uint8, buffer=buffer,
                           offset=header.pixels_offset(slot), strides=(header.stride, 1))
                for slot in range(header.slot_count)
            ]
            self.buffer = buffer
        return self.buffer

    def pread(self, offset: int, size: int) -> bytes:
        """``size`` bytes at ``offset`` read through the descriptor; _Shrunk if the file ends before."""
        data = os.pread(self.fd, size, offset)
        if len(data) < size:
            raise _Shrunk()
        return data


class NewestFrame(NamedTuple):
    header: SegmentHeader
    """The segment's geometry; its last_frame_id is the one seen at mapping time, not the newest."""
    frame_id: int
    timestamp_ns: int


class FrameReader:
    """Resolves frame references to frames; safe to share between threads.

    Every failure a ring can cause is a RequestError (FRAME_NOT_FOUND, FRAME_INVALID or
    FRAME_EXPIRED); no OSError or layout error escapes, so callers need one except clause.
    """

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
        mapping, fresh = self._intact_mapping(camera_id)
        try:
            return self._read_frame(mapping, camera_id, expected, consume)
        except RequestError:
            if fresh:
                raise
            # Failed against a mapping trusted without a path lookup: was the segment replaced?
            current, _ = self._intact_mapping(camera_id, revalidate=True)
            if current is mapping:
                raise
        return self._read_frame(current, camera_id, expected, consume)

    @staticmethod
    def _read_frame(mapping: "_Mapping", camera_id: str, expected: FrameMetadata, consume: Callable[[FrameView], T]) -> T:
        header, buffer = mapping.header, mapping.map_pixels()
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

        Everything is read with ``pread``, never through a mapping, so a ring truncated at any
        moment is FRAME_INVALID and can never kill the caller: Core maps no ring at all.
        """
        mapping, fresh = self._mapping(camera_id)
        newest = self._newest_or_none(mapping, camera_id)
        if newest is None and not fresh:
            # The path may name a new, whole ring by now; the shrunk one is remapped (and refused) otherwise.
            mapping, _ = self._mapping(camera_id, revalidate=True)
            newest = self._newest_or_none(mapping, camera_id)
        if newest is None:
            self._forget(camera_id)
            raise RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: its ring shrank below the "
                               f"{mapping.needed} bytes its layout needs")
        return newest

    def _newest_or_none(self, mapping: _Mapping, camera_id: str) -> Optional["NewestFrame"]:
        """``_newest``, or None when the file has become shorter than its layout."""
        try:
            return self._newest(mapping)
        except _Shrunk:
            return None
        except OSError as exc:
            self._forget(camera_id)
            raise _ring_error(camera_id, exc) from None

    @staticmethod
    def _newest(mapping: _Mapping) -> "NewestFrame":
        header = mapping.header
        frame_id = read_u64(mapping.pread(LAST_FRAME_ID_OFFSET, 8), 0)
        if frame_id == 0:
            return NewestFrame(header, 0, 0)
        offset = header.record_offset(header.slot_index(frame_id))
        record = SlotRecord.unpack(mapping.pread(offset, SLOT_META_SIZE), 0)
        if record.seq % 2 == 1 or record.frame_id != frame_id or read_u64(mapping.pread(offset, 8), 0) != record.seq:
            return NewestFrame(header, frame_id, 0)
        return NewestFrame(header, frame_id, record.timestamp_ns)

    def _intact_mapping(self, camera_id: str, revalidate: bool = False) -> tuple[_Mapping, bool]:
        """``_mapping`` with its pixels mapped, checked by fstat to still hold its whole layout:
        touching a page past the file's end would kill the process with SIGBUS. A ring that shrank
        in place is FRAME_INVALID."""
        mapping, fresh = self._mapping(camera_id, revalidate)
        if self._whole(mapping, camera_id):
            return mapping, fresh
        if not fresh:
            # The path may name a new, whole ring by now; the shrunk one is remapped (and refused) otherwise.
            mapping, fresh = self._mapping(camera_id, revalidate=True)
            if self._whole(mapping, camera_id):
                return mapping, fresh
        self._forget(camera_id)
        raise RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: its ring shrank below the "
                           f"{mapping.needed} bytes its layout needs")

    def _whole(self, mapping: _Mapping, camera_id: str) -> bool:
        try:
            return mapping.map_pixels().size() >= mapping.needed
        except (OSError, ValueError, OverflowError) as exc:  # mmap raises all three
            self._forget(camera_id)
            raise _ring_error(camera_id, exc) from None

    def _mapping(self, camera_id: str, revalidate: bool = False) -> tuple[_Mapping, bool]:
        """The camera's mapping, and whether its path was looked at by this call."""
        mapping = self._mappings.get(camera_id)
        now = time.monotonic()
        if mapping is not None and not revalidate and now - mapping.checked_at < self._revalidate_s:
            return mapping, False
        path = self._shm_dir + segment_name(camera_id)
        try:
            info = os.lstat(path)
        except OSError as exc:
            self._forget(camera_id)
            raise _ring_error(camera_id, exc) from None
        if mapping is not None and mapping.identity == (info.st_dev, info.st_ino, info.st_size) \
                and stat.S_ISREG(info.st_mode):
            mapping.checked_at = now
            with self._lock:
                if self._mappings.get(camera_id) is mapping:
                    self._mappings.move_to_end(camera_id)
            return mapping, True
        # New camera, or the segment was replaced: map the current one. No lock is held while the
        # ring is opened and mapped, so no other camera ever waits on this one's path. The old
        # mapping is unmapped once the last in-flight reader drops its views.
        try:
            mapping = _Mapping(path)
        except (OSError, ValueError, OverflowError) as exc:  # LayoutError is a ValueError; mmap raises all three
            self._forget(camera_id)
            raise _ring_error(camera_id, exc) from None
        with self._lock:
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


def _ring_error(camera_id: str, exc: Exception) -> RequestError:
    """The contract's answer to what went wrong opening or mapping a camera's ring."""
    if isinstance(exc, FileNotFoundError):
        return RequestError(ErrorCode.FRAME_NOT_FOUND, f"camera {camera_id} has no frame segment")
    if isinstance(exc, PermissionError):
        return RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: no read permission on its segment")
    if isinstance(exc, LayoutError):
        return RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: {exc}")
    if isinstance(exc, OSError):
        return RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: cannot open its ring: {exc.strerror or exc}")
    return RequestError(ErrorCode.FRAME_INVALID, f"camera {camera_id}: cannot map its ring: {exc}")
