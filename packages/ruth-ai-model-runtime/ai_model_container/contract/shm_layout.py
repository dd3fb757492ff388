"""VAS frame export format, version 1: the byte layout of a camera's ring buffer.

The only module that knows offsets and struct formats of the shared-memory
segment; the reader and the reference writer both call it. All integers are
little-endian. CONTRACT.md, "Shared-memory frame layout", is the prose version.

    offset 0                      header (64 bytes)
    offset 64                     slot table: slot_count records of 64 bytes
    offset data_offset            slot 0 pixels (slot_size bytes)
    data_offset + i * slot_size   slot i pixels: Y plane then interleaved UV plane,
                                  both with rows of ``stride`` bytes

Each slot record starts with a seqlock counter: odd while the writer is
writing the slot, even when it is stable. Frame f lives in slot
(f - 1) % slot_count.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import NamedTuple, Optional

SHM_DIR = "/dev/shm"
SHM_REFERENCE_PREFIX = SHM_DIR + "/vas_frames_"
FRAME_REFERENCE_PATTERN = r"^/dev/shm/vas_frames_[A-Za-z0-9_-]{1,64}$"
"""The only frame_reference form accepted: the camera's ring under /dev/shm."""

MAGIC = b"VASFRM01"
LAYOUT_VERSION = 1
HEADER_SIZE = 64
SLOT_META_SIZE = 64
PIXEL_FORMAT_NV12 = 1
DATA_ALIGNMENT = 4096
MAX_SLOTS = 1024
MAX_DIMENSION = 16384
MAX_SEGMENT_BYTES = 64 << 30
"""Largest layout a reader maps (64 GiB; an 8K camera with 1024 slots needs 51 GB): a header
describing more is refused, so a corrupt or hostile header cannot make a reader reserve an
absurd share of its address space."""

HEADER_FIELDS = (
    ("magic", "8s"), ("version", "I"), ("header_size", "I"), ("slot_count", "I"), ("width", "I"),
    ("height", "I"), ("stride", "I"), ("pixel_format", "I"), ("slot_meta_size", "I"),
    ("slot_size", "Q"), ("data_offset", "Q"), ("last_frame_id", "Q"),
)
SLOT_FIELDS = (
    ("seq", "Q"), ("frame_id", "Q"), ("timestamp_ns", "Q"), ("width", "I"), ("height", "I"),
    ("stride", "I"), ("pixel_format", "I"), ("reserved", "24x"),
)
HEADER = struct.Struct("<" + "".join(code for _, code in HEADER_FIELDS))
SLOT_RECORD = struct.Struct("<" + "".join(code for _, code in SLOT_FIELDS))
U64 = struct.Struct("<Q")
LAST_FRAME_ID_OFFSET = struct.calcsize("<" + "".join(code for _, code in HEADER_FIELDS[:-1]))
"""Offset of last_frame_id in the header, updated by the writer after each frame."""

assert HEADER.size == HEADER_SIZE and SLOT_RECORD.size == SLOT_META_SIZE

_REFERENCE = re.compile(FRAME_REFERENCE_PATTERN)


class LayoutError(ValueError):
    """A segment whose header does not describe a valid version-1 layout."""


def segment_name(camera_id: str) -> str:
    """POSIX shared-memory name of a camera's ring (as passed to shm_open)."""
    return "/vas_frames_" + camera_id


def segment_reference(camera_id: str) -> str:
    """The frame_reference string that names a camera's ring on the wire."""
    return SHM_REFERENCE_PREFIX + camera_id


def camera_id_from_reference(reference: str) -> Optional[str]:
    """The camera id named by a frame_reference, or None if it is not a valid one."""
    if not _REFERENCE.match(reference):
        return None
    return reference[len(SHM_REFERENCE_PREFIX):]


def nv12_bytes(stride: int, height: int) -> int:
    """Bytes of one NV12 frame: a Y plane of ``height`` rows and a UV plane of height/2 rows."""
    return stride * height * 3 // 2


@dataclass(frozen=True)
class SegmentHeader:
    slot_count: int
    width: int
    height: int
    stride: int
    slot_size: int
    data_offset: int
    last_frame_id: int = 0
    magic: bytes = MAGIC
    version: int = LAYOUT_VERSION
    header_size: int = HEADER_SIZE
    pixel_format: int = PIXEL_FORMAT_NV12
    slot_meta_size: int = SLOT_META_SIZE

    @classmethod
    def plan(cls, width: int, height: int, slot_count: int, stride: Optional[int] = None) -> "SegmentHeader":
        """The header of a new ring for frames of ``width`` x ``height``.

        Slots are padded to whole pages so each slot's pixels start page-aligned.
        """
        stride = width if stride is None else stride
        table_end = HEADER_SIZE + slot_count * SLOT_META_SIZE
        slot_size = _round_up(nv12_bytes(stride, height), DATA_ALIGNMENT)
        header = cls(
            slot_count=slot_count,
            width=width,
            height=height,
            stride=stride,
            slot_size=slot_size,
            data_offset=_round_up(table_end, DATA_ALIGNMENT),
        )
        header.validate(header.total_size)
        return header

    @classmethod
    def unpack(cls, buffer: object) -> "SegmentHeader":
        (magic, version, header_size, slot_count, width, height, stride, pixel_format,
         slot_meta_size, slot_size, data_offset, last_frame_id) = HEADER.unpack_from(buffer, 0)
        return cls(
            magic=magic, version=version, header_size=header_size, slot_count=slot_count,
            width=width, height=height, stride=stride, pixel_format=pixel_format,
            slot_meta_size=slot_meta_size, slot_size=slot_size, data_offset=data_offset,
            last_frame_id=last_frame_id,
        )

    def pack_into(self, buffer: object) -> None:
        HEADER.pack_into(
            buffer, 0, self.magic, self.version, self.header_size, self.slot_count,
            self.width, self.height, self.stride, self.pixel_format, self.slot_meta_size,
            self.slot_size, self.data_offset, self.last_frame_id,
        )

    @property
    def total_size(self) -> int:
        return self.data_offset + self.slot_count * self.slot_size

    def validate(self, segment_size: int) -> None:
        """Raise LayoutError naming the first field that breaks the version-1 rules."""
        checks = (
            (self.magic == MAGIC, f"magic {self.magic!r} is not {MAGIC!r}"),
            (self.version == LAYOUT_VERSION, f"layout version {self.version} is not {LAYOUT_VERSION}"),
            (self.header_size == HEADER_SIZE, f"header_size {self.header_size} is not {HEADER_SIZE}"),
            (self.slot_meta_size == SLOT_META_SIZE, f"slot_meta_size {self.slot_meta_size} is not {SLOT_META_SIZE}"),
            (self.pixel_format == PIXEL_FORMAT_NV12, f"pixel_format {self.pixel_format} is not NV12 ({PIXEL_FORMAT_NV12})"),
            (1 <= self.slot_count <= MAX_SLOTS, f"slot_count {self.slot_count} is outside 1..{MAX_SLOTS}"),
            (0 < self.width <= MAX_DIMENSION and 0 < self.height <= MAX_DIMENSION,
             f"dimensions {self.width}x{self.height} are outside 1..{MAX_DIMENSION}"),
            (self.width % 2 == 0 and self.height % 2 == 0, f"NV12 needs even dimensions, got {self.width}x{self.height}"),
            (self.stride >= self.width, f"stride {self.stride} is smaller than width {self.width}"),
            (self.slot_size >= nv12_bytes(self.stride, self.height),
             f"slot_size {self.slot_size} cannot hold a {self.stride}x{self.height} NV12 frame"),
            (self.data_offset % DATA_ALIGNMENT == 0, f"data_offset {self.data_offset} is not a multiple of {DATA_ALIGNMENT}"),
            (self.data_offset >= HEADER_SIZE + self.slot_count * SLOT_META_SIZE,
             f"data_offset {self.data_offset} overlaps the slot table"),
            (self.total_size <= MAX_SEGMENT_BYTES,
             f"layout needs {self.total_size} bytes, more than the {MAX_SEGMENT_BYTES} a ring may have"),
            (self.total_size <= segment_size,
             f"layout needs {self.total_size} bytes but the segment has {segment_size}"),
        )
        for ok, reason in checks:
            if not ok:
                raise LayoutError(reason)

    def slot_index(self, frame_id: int) -> int:
        return (frame_id - 1) % self.slot_count

    def record_offset(self, slot: int) -> int:
        return HEADER_SIZE + slot * SLOT_META_SIZE

    def pixels_offset(self, slot: int) -> int:
        return self.data_offset + slot * self.slot_size


class SlotRecord(NamedTuple):
    """One slot's record. A named tuple: readers build one per request, and it is the cheapest immutable record."""

    seq: int
    frame_id: int
    timestamp_ns: int
    width: int
    height: int
    stride: int
    pixel_format: int

    @classmethod
    def unpack(cls, buffer: object, offset: int) -> "SlotRecord":
        return cls._make(SLOT_RECORD.unpack_from(buffer, offset))

    def pack_into(self, buffer: object, offset: int) -> None:
        SLOT_RECORD.pack_into(buffer, offset, *self)


def read_u64(buffer: object, offset: int) -> int:
    return U64.unpack_from(buffer, offset)[0]


def write_u64(buffer: object, offset: int, value: int) -> None:
    U64.pack_into(buffer, offset, value)


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
