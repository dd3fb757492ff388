"""Events-db section: the database event sink's side of "500 cameras x 10 fps into PostgreSQL".

A throwaway PostgreSQL server on this machine (fsync and synchronous_commit
on, as deployed) and the real ``DatabaseEventSink``; events are shaped like
the no-op model's answers (10 detections each), unique per (camera, frame).
Core itself is not in the loop (it is being rewritten for 500 cameras): the
sink is offered N events/s from one thread, in 10 ms bursts, the way Core's
workers hand them over. The full-Core figure is for later.

1. Ingest at offered rates (5,000/s is 500 cameras x 10 fps): events/s landed
   in the table, the server's CPU per event (the postmaster and its backends,
   from /proc), the sink's CPU per event (this process's CPU less a baseline
   run with a sink that only counts, interleaved in the same run), peak events
   buffered, peak RSS growth, drops. The JSON Lines sink is the reference for
   CPU per event.
2. Throughput ceiling: events offered as fast as one thread can, how many land
   per second.
3. Outage (run first, so the process has not grown for a full buffer before
   its RSS is read): at 5,000/s the server is stopped for 30 s (``--quick``: 10 s) and
   started again: offered, written, dropped, duplicates, peak buffered and
   RSS, time from restart to the first commit and to an empty buffer, and
   whether the table holds exactly ``written`` rows.
"""

from __future__ import annotations

import gc
import os
import resource
import threading
import time
import uuid
from dataclasses import dataclass
from statistics import median
from typing import Any, Callable, Optional

import sqlalchemy as sa

from ruth_ai_core.events import JsonLinesSink
from ruth_ai_core.storage import schema as t
from ruth_ai_core.storage.database import Database
from ruth_ai_core.storage.event_sink import DEFAULT_BATCH_SIZE, DEFAULT_CAPACITY, DatabaseEventSink
from ruth_ai_core.storage.local_cluster import ClusterUnavailable, LocalCluster

from .options import Options
from .table import Row, SectionResult, Target

SECTION = "events-db"
CAMERAS = 500
CAMERA_FPS = 10
TICK_S = 0.01
DETECTIONS = [{"class_id": i, "class_name": f"class{i}", "confidence": 0.5, "bbox": [10.0 * i, 20.0, 10.0 * i + 40.0, 80.0],
               "keypoints": None, "attributes": None} for i in range(10)]
"""Ten detections as Core has them: the daemon's response, decoded (plain JSON values)."""
Event = dict[str, Any]
"""An event as Core hands it to a sink: ``ruth_ai_core.events.ResultEvent``'s fields in a dict."""


class CountingSink:
    """The baseline: takes events and counts them, nothing else."""

    kind = "none"

    def __init__(self) -> None:
        self.written = 0

    def write(self, event: Event) -> None:
        self.written += 1

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class Offer:
    """Builds events as Core does (one dict per answer) and hands them to a sink at ``rate`` per second."""

    def __init__(self, rate: float, tag: str, distinct: bool = False) -> None:
        """``distinct``: every event gets its own detection dicts, as Core's do (memory figures need that;
        sharing them keeps the offer loop cheap for the throughput levels)."""
        self.rate = rate
        self.tag = tag
        self.distinct = distinct
        self.offered = 0
        self._frame = 0

    def events(self, count: int) -> list[Event]:
        made = []
        now = time.time()
        for _ in range(count):
            self._frame += 1
            camera = self._frame % CAMERAS
            detections = [dict(d, bbox=list(d["bbox"])) for d in DETECTIONS] if self.distinct else DETECTIONS
            made.append({"camera_id": f"{self.tag}_{camera}", "model_id": "bench_noop", "frame_id": self._frame,
                         "frame_timestamp_ns": 1_700_000_000_000_000_000 + self._frame * 1000, "sent_at": now,
                         "latency_ms": 1.2, "detections": detections, "width": 1920, "height": 1080, "error": None,
                         "error_code": None, "metadata": {}})
        return made

    def run(self, write: Callable[[Event], None], seconds: float,
            during: Optional[Callable[[float], None]] = None) -> float:
        """Offer for ``seconds`` (or as fast as possible when rate is 0); returns the elapsed time."""
        started = time.monotonic()
        per_tick = max(1, int(round(self.rate * TICK_S))) if self.rate else 200
        next_tick = started
        while True:
            now = time.monotonic()
            if now - started >= seconds:
                break
            for event in self.events(per_tick):
                write(event)
            self.offered += per_tick
            if during is not None:
                during(now - started)
            if self.rate:
                next_tick += TICK_S
                delay = next_tick - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
        return time.monotonic() - started


def _rss_mb() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


@dataclass
class Level:
    landed_per_s: float
    server_us: float
    process_cpu_s: float
    events: int
    dropped: int
    peak_buffered: int
    rss_growth_mb: float
    seconds: float


def _run_level(db: Database, cluster: LocalCluster, make_sink: Callable[[], Any], rate: float, seconds: float) -> Level:
    gc.collect()
    sink = make_sink()
    offer = Offer(rate, f"b{uuid.uuid4().hex[:6]}")
    rss_before = _rss_mb()
    peak_rss = [rss_before]

    def sample(_: float) -> None:
        if offer.offered % 2000 < 100:
            peak_rss[0] = max(peak_rss[0], _rss_mb())

    cpu_before, server_before = time.process_time(), cluster.cpu_seconds()
    started = time.monotonic()
    elapsed = offer.run(sink.write, seconds, sample)
    if isinstance(sink, DatabaseEventSink):
        sink.drain(60)
    until_landed = time.monotonic() - started
    cpu_after, server_after = time.process_time(), cluster.cpu_seconds()
    written = getattr(sink, "written", 0)
    dropped = getattr(sink, "dropped", 0)
    peak = getattr(sink, "peak_buffered", 0)
    sink.close()
    return Level(landed_per_s=written / until_landed, server_us=(server_after - server_before) / max(written, 1) * 1e6,
                 process_cpu_s=cpu_after - cpu_before, events=offer.offered, dropped=dropped, peak_buffered=peak,
                 rss_growth_mb=peak_rss[0] - rss_before, seconds=elapsed)


def _ingest(db: Database, cluster: LocalCluster, options: Options) -> tuple[list[Row], list[str]]:
    seconds = options.scaled(10.0, 4.0)
    rates = [CAMERAS * CAMERA_FPS, 2 * CAMERAS * CAMERA_FPS] if options.quick else \
        [CAMERAS * CAMERA_FPS, 2 * CAMERAS * CAMERA_FPS, 4 * CAMERAS * CAMERA_FPS]
    rows: list[Row] = []
    notes: list[str] = []
    jsonl_path = f"/tmp/bench-events-{uuid.uuid4().hex[:6]}.jsonl"
    try:
        for rate in rates:
            results: dict[str, list[Level]] = {"db": [], "jsonl": [], "none": []}
            makers = {"db": lambda: DatabaseEventSink(db), "jsonl": lambda: JsonLinesSink(jsonl_path),
                      "none": CountingSink}
            for repeat in range(options.repeats):
                order = ["none", "db", "jsonl"] if repeat % 2 == 0 else ["jsonl", "db", "none"]
                for name in order:
                    results[name].append(_run_level(db, cluster, makers[name], rate, seconds))
                os.truncate(jsonl_path, 0)
            base_us = [lv.process_cpu_s / lv.events * 1e6 for lv in results["none"]]
            db_us = median(lv.process_cpu_s / lv.events * 1e6 for lv in results["db"]) - median(base_us)
            jsonl_us = median(lv.process_cpu_s / lv.events * 1e6 for lv in results["jsonl"]) - median(base_us)
            landed = median(lv.landed_per_s for lv in results["db"])
            server = median(lv.server_us for lv in results["db"])
            drops = max(lv.dropped for lv in results["db"])
            peak = max(lv.peak_buffered for lv in results["db"])
            rss = median(lv.rss_growth_mb for lv in results["db"])
            label = f"{rate:,} events/s offered"
            rows.append(Row(SECTION, f"{label}: landed in PostgreSQL", "events/s", landed, rate, "offered",
                            Target("higher", 1.02)))
            rows.append(Row(SECTION, f"{label}: sink CPU per event offered", "us", db_us, jsonl_us, "JSON Lines sink"))
            rows.append(Row(SECTION, f"{label}: PostgreSQL server CPU per event", "us", server))
            notes.append(f"events-db ingest {rate:,}/s x {seconds:g} s: landed {landed:,.0f}/s, sink CPU {db_us:.1f} us/event "
                         f"(JSON Lines {jsonl_us:.1f}, baseline offer loop {median(base_us):.1f} us/event not counted), "
                         f"server CPU {server:.1f} us/event = {server * rate / 1e6 * 100:.0f}% of a core, "
                         f"peak buffered {peak:,} events, RSS growth {rss:.0f} MB, dropped {drops}")
    finally:
        try:
            os.unlink(jsonl_path)
        except OSError:
            pass
    # The ceiling: one thread offering as fast as it can.
    level = _run_level(db, cluster, lambda: DatabaseEventSink(db, capacity=10_000_000), 0, options.scaled(6.0, 3.0))
    rows.append(Row(SECTION, "ceiling: landed, offered as fast as one thread can", "events/s", level.landed_per_s))
    notes.append(f"events-db ceiling: {level.events:,} events offered in {level.seconds:.1f} s, landed at "
                 f"{level.landed_per_s:,.0f}/s (including the drain), server {level.server_us:.1f} us/event")
    return rows, notes


def _outage(db: Database, cluster: LocalCluster, options: Options) -> tuple[list[Row], list[str]]:
    rate = CAMERAS * CAMERA_FPS
    before_s, outage_s, after_s = options.scaled(10.0, 3.0), options.scaled(30.0, 10.0), options.scaled(15.0, 5.0)
    with db.write() as conn:
        conn.execute(t.events.delete())
    gc.collect()
    sink = DatabaseEventSink(db)
    offer = Offer(rate, f"o{uuid.uuid4().hex[:6]}", distinct=True)
    state: dict[str, Any] = {"stopped": None, "started": None, "first_commit": None, "drained": None,
                             "rss": _rss_mb(), "rss_base": _rss_mb(), "slowest_write_ms": 0.0}
    stopper = threading.Thread(target=lambda: None)

    def timed_write(event: Event) -> None:
        started = time.perf_counter()
        sink.write(event)
        state["slowest_write_ms"] = max(state["slowest_write_ms"], (time.perf_counter() - started) * 1000)

    def during(elapsed: float) -> None:
        nonlocal stopper
        if state["stopped"] is None and elapsed >= before_s:
            state["stopped"] = time.monotonic()
            stopper = threading.Thread(target=cluster.stop)  # the offer loop keeps its pace meanwhile
            stopper.start()
        elif state["started"] is None and state["stopped"] is not None and elapsed >= before_s + outage_s:
            stopper.join()
            state["batches_at_restart"] = sink.batches
            state["started"] = time.monotonic()
            stopper = threading.Thread(target=cluster.start)
            stopper.start()
        if state["started"] is not None:
            if state["first_commit"] is None and sink.batches > state["batches_at_restart"]:
                state["first_commit"] = time.monotonic()
            if state["first_commit"] is not None and state["drained"] is None and sink.buffered < 2 * DEFAULT_BATCH_SIZE:
                state["drained"] = time.monotonic()
        if offer.offered % 5000 < 60:
            state["rss"] = max(state["rss"], _rss_mb())

    offer.run(timed_write, before_s + outage_s + after_s, during)
    stopper.join()
    still_offering = state["drained"] is not None
    while state["drained"] is None and time.monotonic() - state["started"] < 120:  # offering stopped: drain
        if sink.buffered < 2 * DEFAULT_BATCH_SIZE:
            state["drained"] = time.monotonic()
        time.sleep(0.02)
    sink.drain(60)
    sink.close()
    with db.read() as conn:
        rows_in_table = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar_one()
    first = (state["first_commit"] - state["started"]) if state["first_commit"] else float("nan")
    drained = (state["drained"] - state["started"]) if state["drained"] else float("nan")
    offered_during = rate * outage_s
    rows_verdict = ("== written + duplicates" if rows_in_table == sink.written + sink.duplicates
                    else "!= written + duplicates: LOST OR DUPLICATED")
    notes = [
        f"events-db outage: {rate:,} events/s, server stopped for {outage_s:g} s after {before_s:g} s, then "
        f"{after_s:g} s more: offered {sink.offered:,}, written {sink.written:,}, dropped {sink.dropped:,} "
        f"(about {offered_during:,.0f} offered while it was down; the buffer holds {DEFAULT_CAPACITY:,}), "
        f"duplicates {sink.duplicates}, rejected {sink.rejected}, failed attempts {sink.failures}, "
        f"peak buffered {sink.peak_buffered:,}, peak RSS growth {state['rss'] - state['rss_base']:.0f} MB "
        f"(events with their own 10 detections each, as Core's are), "
        f"slowest write() {state['slowest_write_ms']:.2f} ms; after the restart: first commit {first:.1f} s, "
        f"buffer empty {drained:.1f} s ({'while still offering 5,000/s' if still_offering else 'after the offer stopped'}); "
        f"rows in the table {rows_in_table:,} ({rows_verdict}); "
        f"written + duplicates + dropped + rejected "
        f"{'==' if sink.written + sink.duplicates + sink.dropped + sink.rejected == sink.offered else '!='} offered",
    ]
    rows = [
        Row(SECTION, f"{outage_s:g} s outage: events dropped (buffer {DEFAULT_CAPACITY:,})", "events", sink.dropped),
        Row(SECTION, f"{outage_s:g} s outage: peak RSS growth", "MB", state["rss"] - state["rss_base"]),
        Row(SECTION, f"{outage_s:g} s outage: restart to buffer empty", "s", drained),
        Row(SECTION, f"{outage_s:g} s outage: slowest write()", "ms", state["slowest_write_ms"]),
    ]
    return rows, notes


def run(options: Options) -> SectionResult:
    try:
        cluster = LocalCluster(durable=True)
    except ClusterUnavailable as exc:
        return SectionResult([], [f"events-db: skipped: {exc}"])
    try:
        cluster.init().start()
        url = cluster.create_database()
        with Database.open(url, upgrade=True) as db:
            # The outage first: its RSS figure needs a process whose allocator has not grown for a full buffer yet.
            outage_rows, outage_notes = _outage(db, cluster, options)
            rows, notes = _ingest(db, cluster, options)
        notes.append(f"events-db setup: PostgreSQL {cluster.bin.parent.name} on a Unix socket, fsync and "
                     f"synchronous_commit on; sink batch {DEFAULT_BATCH_SIZE:,}, buffer {DEFAULT_CAPACITY:,}; "
                     f"events of 10 detections; {os.cpu_count()} CPUs shared with the server; "
                     f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
        return SectionResult(rows + outage_rows, notes + outage_notes)
    finally:
        cluster.destroy()
