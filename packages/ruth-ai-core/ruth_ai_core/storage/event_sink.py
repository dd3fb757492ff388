"""Result events into the database: batched, idempotent, bounded, and never in the camera path's way.

``write`` is what Core's request workers call for every answered request. It
turns the event into its table row (the JSON serialised once, as
``JsonLinesSink.write`` does: about 10 us for 10 detections) and appends the
row to a bounded in-memory buffer (a lock and a deque append); when the buffer
is full the event is dropped and counted before any work is done on it, so a
slow or absent database costs events, never a blocked worker, a stalled camera
or unbounded memory. Rows, not ``ResultEvent`` objects, are buffered: 1.4 KB
against 7.3 KB for an event of 10 detections (measured), so the default
50,000 hold 10 s of 500 cameras x 10 fps in about 70 MB. A background thread takes batches off the buffer and
inserts each in one transaction with ``ON CONFLICT DO NOTHING`` (see below).

How a batch is inserted is the one thing that differs by backend, measured
(``python -m bench --only events-db``): on PostgreSQL the batch is COPYed
straight into the table, and only if a row is already there (a resent batch)
COPYed into a session-local temporary table and moved with ``INSERT INTO
events SELECT ... ON CONFLICT DO NOTHING`` (see ``_copy_batch``). COPY costs
about 15 us of client CPU per event of two detections, against 38 us for
pipelined executemany and 190 us for SQLAlchemy's multi-row VALUES (psycopg
re-parses a 12,000-parameter query per batch). On SQLite it is one
``executemany`` of ``INSERT ... ON CONFLICT DO NOTHING``. Both report exactly
how many rows were new.

The conflict key is the events table's primary key, (camera_id, model_id,
frame_timestamp_ns, frame_id): the frame id alone restarts at 1 when VAS
replaces a ring, the capture time does not repeat. A batch whose commit
outcome is unknown (the connection broke mid-commit) is simply sent again:
rows already there are skipped and counted as ``duplicates``, never stored twice.

When the database is down the batch in hand is kept and retried with
exponential backoff (``retry_initial_s`` doubling up to ``retry_max_s``;
SQLAlchemy's pre-ping replaces the broken pooled connections), while new
events fill the buffer and, once it is full, are dropped and counted. A
batch the database refuses for its content (not an outage) is retried row by
row and only the offending rows are discarded (``rejected``, logged), so one
bad event cannot wedge the sink.

Same shape as ``JsonLinesSink``: ``write``, ``flush`` (here: ask the writer
to send what it has now; never waits), ``close`` (drain, bounded by a
timeout). ``drain`` waits until everything buffered is stored.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Optional

import orjson
import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from .database import Database
from .errors import DatabaseUnavailable

logger = logging.getLogger(__name__)

DEFAULT_CAPACITY = 50_000
"""Events held while the database is slow or down: 10 s of 500 cameras x 10 fps, about 70 MB at 10 detections."""
DEFAULT_BATCH_SIZE = 1_000
DEFAULT_FLUSH_INTERVAL_S = 0.2
DEFAULT_RETRY_INITIAL_S = 0.1
DEFAULT_RETRY_MAX_S = 2.0
KEY = ["camera_id", "model_id", "frame_timestamp_ns", "frame_id"]
COLUMNS = KEY + ["sent_at", "latency_ms", "width", "height", "error", "error_code", "detections", "metadata"]
"""The events table's columns, in the order rows are built; detections and metadata as JSON text."""
class _Refused(Exception):
    """The database refused a batch for its content (raised below SQLAlchemy, by COPY)."""


Row = tuple[Any, ...]
"""One event as the events table's columns, in COLUMNS order."""

_REFUSED = (SQLAlchemyError, ValueError, TypeError, OverflowError, _Refused)
"""What a batch the database refuses for its content raises (an outage is DatabaseUnavailable)."""
# Untyped columns: the JSON is already text, serialised once with orjson, so SQLAlchemy passes it through.
_EVENTS_TEXT = sa.table("events", *(sa.column(name) for name in COLUMNS))
_SQLITE_INSERT = sqlite.insert(_EVENTS_TEXT).on_conflict_do_nothing(index_elements=KEY)
_PG_STAGE = ("CREATE TEMPORARY TABLE IF NOT EXISTS ruth_ai_events_batch (LIKE events INCLUDING DEFAULTS) "
             "ON COMMIT DELETE ROWS")
_PG_COPY_DIRECT = f"COPY events ({', '.join(COLUMNS)}) FROM STDIN"
_PG_COPY = f"COPY ruth_ai_events_batch ({', '.join(COLUMNS)}) FROM STDIN"
_PG_MOVE = (f"INSERT INTO events ({', '.join(COLUMNS)}) SELECT {', '.join(COLUMNS)} FROM ruth_ai_events_batch "
            "ON CONFLICT DO NOTHING")


class DatabaseEventSink:
    """Events into the ``events`` table; see the module docstring. Counters are plain attributes."""

    kind = "database"

    def __init__(self, db: Database, capacity: int = DEFAULT_CAPACITY, batch_size: int = DEFAULT_BATCH_SIZE,
                 flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S, retry_initial_s: float = DEFAULT_RETRY_INITIAL_S,
                 retry_max_s: float = DEFAULT_RETRY_MAX_S) -> None:
        if capacity < 1 or batch_size < 1:
            raise ValueError("capacity and batch_size must be at least 1")
        self.db = db
        self.target = db.location.display()
        self.capacity = capacity
        self.batch_size = batch_size
        self.flush_interval_s = flush_interval_s
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = retry_max_s
        self.offered = 0
        """Events handed to ``write``."""
        self.written = 0
        """Rows inserted, the commit confirmed."""
        self.duplicates = 0
        """Rows the database already had when sent: a batch sent again because its commit was in doubt (the
        connection broke during it; its rows may have been stored then), or events handed over twice.
        ``offered == written + duplicates + dropped + rejected`` once the sink is closed."""
        self.dropped = 0
        """Events refused because the buffer was full, or still buffered when ``close`` gave up."""
        self.rejected = 0
        """Events the database refused for their content (logged)."""
        self.batches = 0
        """Batches committed."""
        self.failures = 0
        """Batch attempts that failed (each outage counts every retry)."""
        self.peak_buffered = 0
        self.connected = True
        """False from a failed attempt until the next batch commits."""
        self.last_error: Optional[str] = None
        self._buffer: collections.deque[Row] = collections.deque()
        self._pending: list[Row] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._idle = threading.Condition(self._lock)
        self._stopping = False
        self._insert = _copy_batch if db.is_postgresql else _executemany_batch
        self._thread = threading.Thread(target=self._run, name="event-sink-db", daemon=True)
        self._thread.start()

    # -- the caller's side: never blocks ------------------------------------------------

    def write(self, event: dict[str, Any]) -> None:
        """Buffer ``event``'s row for the writer; when the buffer is full, drop it and count it."""
        with self._lock:
            self.offered += 1
            if len(self._buffer) >= self.capacity or self._stopping:
                self.dropped += 1
                return
        try:
            row = _row(event)  # outside the lock: other workers are not held up by it
        except Exception:  # a validated event always serialises; should one not, it costs itself only
            logger.exception("event sink: cannot serialise event %s/%s frame %s", event.get("camera_id"),
                             event.get("model_id"), event.get("frame_id"))
            with self._lock:
                self.rejected += 1
            return
        with self._lock:
            size = len(self._buffer)
            if size >= self.capacity or self._stopping:
                self.dropped += 1
                return
            self._buffer.append(row)
            size += 1
            if size > self.peak_buffered:
                self.peak_buffered = size
        if size == self.batch_size:
            self._wake.set()

    def flush(self) -> None:
        """Ask the writer to send what it has now (returns at once; see ``drain`` to wait)."""
        self._wake.set()

    @property
    def buffered(self) -> int:
        """Events held in memory: the buffer plus the batch being written."""
        with self._lock:
            return len(self._buffer) + len(self._pending)

    def drain(self, timeout_s: float = 10.0) -> bool:
        """Wait until every buffered event is stored (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout_s
        self._wake.set()
        with self._idle:
            while self._buffer or self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(min(remaining, 0.05))
                self._wake.set()
        return True

    def close(self, timeout_s: float = 5.0) -> None:
        """Store what is buffered (for at most ``timeout_s``), then stop; anything left is counted as dropped."""
        if not self._thread.is_alive():
            return
        self.drain(timeout_s)
        with self._lock:
            self._stopping = True
        self._wake.set()
        self._thread.join(max(1.0, self.retry_max_s + 1.0))
        with self._lock:
            left = len(self._buffer) + len(self._pending)
            self.dropped += left
            self._buffer.clear()
            self._pending = []
        if left:
            logger.error("event sink closed with %d events not stored (database %s)", left, self.target)

    def counts(self) -> dict[str, int]:
        with self._lock:
            buffered = len(self._buffer) + len(self._pending)
        return {"offered": self.offered, "written": self.written, "duplicates": self.duplicates,
                "dropped": self.dropped, "rejected": self.rejected, "batches": self.batches,
                "failures": self.failures, "buffered": buffered, "peak_buffered": self.peak_buffered}

    # -- the writer thread --------------------------------------------------------------

    def _run(self) -> None:
        delay = self.retry_initial_s
        while True:
            with self._lock:
                if not self._pending:
                    count = min(len(self._buffer), self.batch_size)
                    self._pending = [self._buffer.popleft() for _ in range(count)]
                pending = self._pending
                stopping = self._stopping
                if not pending:
                    self._idle.notify_all()
            if not pending:
                if stopping:
                    return
                self._wake.wait(self.flush_interval_s)
                self._wake.clear()
                continue
            try:
                try:
                    self._store(pending)
                except _REFUSED:
                    with self._lock:
                        self.failures += 1
                    self._store_one_by_one(pending)
            except DatabaseUnavailable as exc:
                self._failed(exc)
                if stopping:
                    return
                self._sleep(delay)
                delay = min(delay * 2, self.retry_max_s)
                continue
            except Exception:  # a bug must cost this batch, not the sink
                logger.exception("event sink: internal error; %d events discarded", len(pending))
                with self._lock:
                    self.rejected += len(pending)
            delay = self.retry_initial_s
            with self._lock:
                self._pending = []
                if not self._buffer:
                    self._idle.notify_all()

    def _store(self, rows: list[Row]) -> None:
        with self.db.write() as conn:
            inserted = self._insert(conn, rows)
        with self._lock:
            self.written += inserted
            self.duplicates += len(rows) - inserted
            self.batches += 1
            if not self.connected:
                logger.warning("event sink: database %s answers again (%d events buffered)", self.target,
                               len(self._buffer))
            self.connected = True
            self.last_error = None

    def _store_one_by_one(self, batch: list[Row]) -> None:
        """A batch the database refused: store each row alone, discard (and log) only the rows it refuses.

        If the database goes away meanwhile, the rows not yet tried stay pending for the normal retry."""
        for index, row in enumerate(batch):
            try:
                self._store([row])
            except DatabaseUnavailable:
                with self._lock:
                    self._pending = batch[index:]
                raise
            except _REFUSED as exc:
                with self._lock:
                    self.rejected += 1
                logger.error("event sink: the database refused event %s/%s frame %s: %s", row[0], row[1], row[3],
                             _first_line(exc))

    def _failed(self, exc: Exception) -> None:
        with self._lock:
            self.failures += 1
            first = self.connected
            self.connected = False
            self.last_error = _first_line(exc)
        if first:
            logger.error("event sink: cannot write to %s (%s); buffering up to %d events, then dropping",
                         self.target, self.last_error, self.capacity)

    def _sleep(self, seconds: float) -> None:
        """Back off, but wake for close()."""
        deadline = time.monotonic() + seconds
        while not self._stopping:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            time.sleep(min(remaining, 0.05))


def _row(event: dict[str, Any]) -> Row:
    """One event (the dict Core writes, ``events.ResultEvent``'s fields) as the events table's columns
    (COLUMNS order), its detections and metadata serialised to JSON text once, here."""
    detections, metadata = event["detections"], event["metadata"]
    return (event["camera_id"], event["model_id"], event["frame_timestamp_ns"], event["frame_id"], event["sent_at"],
            event["latency_ms"], event["width"], event["height"], event["error"], event["error_code"],
            orjson.dumps(detections).decode() if detections else "[]",
            orjson.dumps(metadata).decode() if metadata else "{}")


def _copy_batch(conn: Connection, rows: list[Row]) -> int:
    """PostgreSQL: COPY straight into events; if a row is already there (a batch sent again after an outage),
    roll back to the savepoint and COPY into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO NOTHING.

    The direct COPY is the common case and costs the server a fifth less than the staged one (measured: 21
    against 27 us per event of 10 detections). COPY is psycopg's own API, below SQLAlchemy, so its errors are
    sorted here: connection trouble is an outage, anything else a refusal of the batch's content."""
    raw = conn.connection.driver_connection
    try:
        with raw.cursor() as cursor:
            cursor.execute("SAVEPOINT ruth_ai_direct")
            try:
                with cursor.copy(_PG_COPY_DIRECT) as copy:
                    for row in rows:
                        copy.write_row(row)
                copied = int(cursor.rowcount)
                cursor.execute("RELEASE SAVEPOINT ruth_ai_direct")
                return copied
            except psycopg.errors.UniqueViolation:
                cursor.execute("ROLLBACK TO SAVEPOINT ruth_ai_direct")
            cursor.execute(_PG_STAGE)
            with cursor.copy(_PG_COPY) as copy:
                for row in rows:
                    copy.write_row(row)
            cursor.execute(_PG_MOVE)
            return int(cursor.rowcount)
    except psycopg.OperationalError as exc:
        conn.invalidate(exc)
        raise DatabaseUnavailable(_first_line(exc)) from exc
    except psycopg.Error as exc:
        raise _Refused(_first_line(exc)) from exc


def _executemany_batch(conn: Connection, rows: list[Row]) -> int:
    """SQLite: one executemany of INSERT ... ON CONFLICT DO NOTHING; rowcount sums the rows inserted."""
    return int(conn.execute(_SQLITE_INSERT, [dict(zip(COLUMNS, row)) for row in rows]).rowcount)


def _first_line(exc: BaseException) -> str:
    origin = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    return (str(origin).strip().splitlines() or [type(exc).__name__])[0]
