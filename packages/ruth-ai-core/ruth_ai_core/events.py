"""Result events: one JSON object per answered (or failed) inference, written in batches by one writer.

An event is written for every request the core sent: a result (detections,
possibly none) or an error (the daemon's error code, or the core's own when no
answer came back). Frames that were selected but never sent are not events;
they are counted drops with a reason (metrics and ``SubscriptionCounts``).

The core's event loop encodes an event (a dict) to its line at once and
appends the bytes to a buffer: bytes are invisible to the garbage collector,
while the parsed detections an event holds would be scanned over and over
while they wait. The sink's writer thread writes the buffer every
``FLUSH_INTERVAL_S`` or ``BATCH_EVENTS`` events. When the target cannot keep up the
buffer stops at ``max_buffered`` events and further events are dropped and
counted (``dropped``): the camera path never waits for a disk or a pipe.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from enum import Enum
from pathlib import Path
from typing import IO, Any, Optional, Protocol

import orjson
from pydantic import BaseModel, ConfigDict, Field

from ai_model_container.contract.schema import Detection

logger = logging.getLogger(__name__)

STDOUT = "-"
FLUSH_INTERVAL_S = 0.05
BATCH_EVENTS = 512
DEFAULT_MAX_BUFFERED = 100_000


class CoreErrorCode(str, Enum):
    """Failures the core names itself, when the daemon gave no response to carry a code."""

    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    """The socket is missing or refused the connection."""
    CONNECTION_FAILED = "CONNECTION_FAILED"
    """The connection broke or the response was malformed."""
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    """No response within the core's request timeout."""


class ResultEvent(BaseModel):
    """The schema of one event line (the core writes plain dicts with exactly these fields)."""

    model_config = ConfigDict(frozen=True)

    camera_id: str
    model_id: str
    frame_id: int
    frame_timestamp_ns: int = Field(description="Capture time of the frame, from its slot record.")
    sent_at: float = Field(description="When the core sent the request, Unix seconds.")
    latency_ms: float = Field(description="Core to daemon and back, as the core measured it.")
    detections: list[Detection] = Field(default_factory=list)
    width: int
    height: int
    error: Optional[str] = None
    error_code: Optional[str] = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class EventSink(Protocol):
    """Where events go (JSON Lines here; a database sink has the same shape). ``write`` never blocks."""

    @property
    def written(self) -> int: ...

    @property
    def dropped(self) -> int: ...

    def write(self, event: dict[str, Any]) -> None: ...

    def flush(self) -> None:
        """Block until every event written so far has reached the target."""

    def close(self) -> None: ...


class JsonLinesSink:
    """Appends events to a file (or stdout) as JSON Lines, from a writer thread of its own."""

    kind = "jsonl"

    def __init__(self, target: str | Path, max_buffered: int = DEFAULT_MAX_BUFFERED) -> None:
        self.target = str(target)
        if self.target == STDOUT:
            self._file: IO[bytes] = sys.stdout.buffer
            self._owned = False
        else:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.target, "ab")
            self._owned = True
        self.max_buffered = max_buffered
        self.written = 0
        self._overflowed = 0
        """Events refused because the buffer was full (the camera path's counter)."""
        self._failed = 0
        """Events lost to a failed write (the writer thread's counter)."""
        self._buffer: deque[bytes] = deque()
        """deque.append and popleft are atomic: the camera path appends without a lock."""
        self._appended = 0
        self._handled = 0
        """Events the writer has taken off the buffer (written, or counted as dropped)."""
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._progress = threading.Condition(self._lock)
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    @property
    def dropped(self) -> int:
        return self._overflowed + self._failed

    def write(self, event: dict[str, Any]) -> None:
        if len(self._buffer) >= self.max_buffered:
            self._overflowed += 1
            return
        self._buffer.append(orjson.dumps(event, option=orjson.OPT_APPEND_NEWLINE))
        self._appended += 1

    def flush(self) -> None:
        target = self._appended
        with self._lock:
            self._wake.notify()
            while self._handled < target and self._thread.is_alive():
                self._progress.wait(1.0)

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        if self._owned:
            self._file.close()

    def _run(self) -> None:
        buffer = self._buffer
        while True:
            with self._lock:
                if len(buffer) < BATCH_EVENTS and not self._closing:
                    self._wake.wait(FLUSH_INTERVAL_S)
                closing = self._closing
            while buffer:
                batch = [buffer.popleft() for _ in range(min(len(buffer), BATCH_EVENTS))]
                self._write(batch)
                with self._lock:
                    self._handled += len(batch)
                    self._progress.notify_all()
            if closing:
                return

    def _write(self, batch: list[bytes]) -> None:
        data = b"".join(batch)
        try:
            self._file.write(data)
            self._file.flush()
        except (OSError, ValueError) as exc:
            self._failed += len(batch)
            logger.error("cannot write %d events to %s: %s", len(batch), self.target, exc)
            return
        self.written += len(batch)
