"""Result events: one line of JSON per answered (or failed) inference, in a JSON Lines sink.

An event is written for every request the core sent: a result (detections,
possibly none) or an error (the daemon's error code, or the core's own when no
answer came back). Frames that were selected but never sent are not events;
they are counted drops with a reason (metrics and ``SubscriptionCounts``).
"""

from __future__ import annotations

import sys
import threading
from enum import Enum
from pathlib import Path
from typing import IO, Any, Optional, Protocol

from pydantic import BaseModel, ConfigDict, Field

from ai_model_container.schema import Detection

STDOUT = "-"


class CoreErrorCode(str, Enum):
    """Failures the core names itself, when the daemon gave no response to carry a code."""

    MODEL_UNAVAILABLE = "MODEL_UNAVAILABLE"
    """The socket is missing or refused the connection."""
    CONNECTION_FAILED = "CONNECTION_FAILED"
    """The connection broke or the response was malformed."""
    REQUEST_TIMEOUT = "REQUEST_TIMEOUT"
    """No response within the core's request timeout."""


class ResultEvent(BaseModel):
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

    @property
    def ok(self) -> bool:
        return self.error_code is None


class EventSink(Protocol):
    """What Core writes events to: ``JsonLinesSink`` or ``storage.event_sink.DatabaseEventSink``.

    ``write`` is called on the request workers and must not block on I/O for
    long; ``flush`` is called from the reconciler's loop every half second and at
    stop; ``close`` once, at the end."""

    written: int

    def write(self, event: ResultEvent) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class JsonLinesSink:
    """Appends events to a file (or stdout); thread-safe. Flushed by ``flush`` and on close."""

    kind = "jsonl"

    def __init__(self, target: str | Path) -> None:
        self.target = str(target)
        if self.target == STDOUT:
            self._file: IO[str] = sys.stdout
            self._owned = False
        else:
            Path(self.target).parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.target, "a", encoding="utf-8")
            self._owned = True
        self._lock = threading.Lock()
        self.written = 0

    def write(self, event: ResultEvent) -> None:
        line = event.model_dump_json() + "\n"
        with self._lock:
            self._file.write(line)
            self.written += 1
            if not self._owned:
                self._file.flush()

    def flush(self) -> None:
        with self._lock:
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.flush()
            if self._owned:
                self._file.close()
