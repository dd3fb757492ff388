"""The database event sink on both backends: every field lands, replays never duplicate, memory stays bounded,
the caller never waits, a bad event cannot wedge it, and an outage costs counted drops, then recovers."""

import threading
import time
import urllib.request

import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.parser import text_string_to_metric_families

from ruth_ai_core.metrics import EventSinkCollector
from ruth_ai_core.storage import schema as t
from ruth_ai_core.storage.database import Database
from ruth_ai_core.storage.event_sink import DatabaseEventSink

from .helpers import event


def stored(db, **where):
    query = sa.select(t.events).order_by(t.events.c.camera_id, t.events.c.frame_timestamp_ns)
    for column, value in where.items():
        query = query.where(t.events.c[column] == value)
    with db.read() as conn:
        return conn.execute(query).all()


@pytest.fixture
def sink(database):
    sinks = []

    def make(**kwargs):
        made = DatabaseEventSink(database, **{"flush_interval_s": 0.05, **kwargs})
        sinks.append(made)
        return made

    yield make
    for made in sinks:
        made.close(timeout_s=2)


def test_events_land_with_every_field(database, sink):
    events = sink()
    first = event("cam1", "det", 7, detections=2, metadata={"note": "x"}, error=None)
    failed = event("cam1", "det", 8, detections=0, error="model said no", error_code="MODEL_ERROR")
    events.write(first)
    events.write(failed)
    assert events.drain(10)
    rows = stored(database)
    assert len(rows) == 2
    row = rows[0]
    assert (row.camera_id, row.model_id, row.frame_id, row.frame_timestamp_ns) == ("cam1", "det", 7,
                                                                                    first["frame_timestamp_ns"])
    assert row.sent_at == first["sent_at"] and row.latency_ms == 1.5 and (row.width, row.height) == (640, 480)
    assert row.detections == first["detections"]
    assert row.metadata == {"note": "x"} and row.error is None
    assert (rows[1].error, rows[1].error_code, rows[1].detections) == ("model said no", "MODEL_ERROR", [])
    assert events.counts() | {"buffered": 0} == {"offered": 2, "written": 2, "duplicates": 0, "dropped": 0,
                                                  "rejected": 0, "batches": events.batches, "failures": 0,
                                                  "buffered": 0, "peak_buffered": events.peak_buffered}


def test_a_replayed_batch_is_counted_never_stored_twice_and_a_replaced_ring_is_not_a_replay(database, sink):
    events = sink(batch_size=50)
    batch = [event("cam1", "det", i) for i in range(1, 121)]
    for e in batch:
        events.write(e)
    assert events.drain(10)
    for e in batch[:80]:  # the same events again, as after a commit whose outcome was unknown
        events.write(e)
    # VAS replaced the ring: frame ids restart at 1, capture times move on; these are new events.
    restarted = [event("cam1", "det", i, timestamp_ns=1_800_000_000_000_000_000 + i) for i in range(1, 11)]
    for e in restarted:
        events.write(e)
    assert events.drain(10)
    assert len(stored(database)) == 130
    assert len(stored(database, frame_id=1)) == 2
    assert (events.written, events.duplicates, events.dropped) == (130, 80, 0)


def test_a_full_buffer_drops_and_counts_and_memory_stays_bounded(database, sink):
    events = sink(capacity=100, batch_size=10)
    lock = threading.Lock()
    if database.is_postgresql:
        holder = database.engine.connect()
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")  # the database is "slow"
    else:
        holder = database.engine.connect()
        holder.execution_options(ruth_ai_write=True)
        holder.begin()  # BEGIN IMMEDIATE: the writer waits for the file lock
    del lock
    try:
        for i in range(1, 1001):
            events.write(event("cam1", "det", i))
        assert events.buffered <= 100 + 10
        assert events.peak_buffered <= 100
        assert events.dropped >= 1000 - 100 - 10
    finally:
        holder.rollback()
        holder.close()
    assert events.drain(20)
    assert events.written + events.dropped == 1000 == events.offered
    assert len(stored(database)) == events.written


def test_write_never_waits_for_the_database(database, sink):
    events = sink(capacity=1000, batch_size=100)
    holder = database.engine.connect()
    if database.is_postgresql:
        holder.exec_driver_sql("BEGIN")
        holder.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
    else:
        holder.execution_options(ruth_ai_write=True)
        holder.begin()
    try:
        # The database stays locked until the end of the test: a write that waited for it would wait for ever.
        # The bounds are loose (a shared machine can stall any thread for a while); a write costs microseconds.
        prepared = [event("cam1", "det", i, detections=0) for i in range(1, 5001)]
        slowest = 0.0
        started_all = time.perf_counter()
        for item in prepared:
            started = time.perf_counter()
            events.write(item)
            slowest = max(slowest, time.perf_counter() - started)
        assert time.perf_counter() - started_all < 2.0
        assert slowest < 0.5, f"a write waited {slowest * 1000:.1f} ms"
        assert events.dropped >= 5000 - 1000 - 100
    finally:
        holder.rollback()
        holder.close()


def test_an_event_the_database_refuses_is_discarded_alone(database, sink):
    events = sink(batch_size=10)
    for i in range(1, 6):
        events.write(event("cam1", "det", i))
    events.write(event("cam1", "det", 2 ** 63))  # no BIGINT holds it: refused by either backend
    for i in range(6, 11):
        events.write(event("cam1", "det", i))
    assert events.drain(10)
    assert (events.written, events.rejected) == (10, 1)
    assert len(stored(database)) == 10
    events.write(event("cam1", "det", 11))
    assert events.drain(10) and events.written == 11


def test_the_counters_are_prometheus_metrics(database, sink):
    events = sink()
    for i in range(1, 4):
        events.write(event("cam1", "det", i))
    assert events.drain(10)
    registry = CollectorRegistry()
    registry.register(EventSinkCollector(events))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{server.server_port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    values = {(s.name, s.labels["sink"]): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert values[("ruth_ai_event_sink_written_total", "database")] == 3
    assert values[("ruth_ai_event_sink_offered_total", "database")] == 3
    assert values[("ruth_ai_event_sink_dropped_total", "database")] == 0
    assert values[("ruth_ai_event_sink_connected", "database")] == 1
    assert values[("ruth_ai_event_sink_capacity", "database")] == events.capacity


def test_the_database_going_down_costs_counted_drops_then_everything_buffered_lands(own_pg_cluster):
    url = own_pg_cluster.create_database()
    with Database.open(url, upgrade=True) as db:
        events = DatabaseEventSink(db, capacity=2000, batch_size=100, flush_interval_s=0.05, retry_max_s=0.3)
        try:
            for i in range(1, 501):
                events.write(event("cam1", "det", i))
            assert events.drain(10) and events.written == 500

            own_pg_cluster.stop()
            offered_during = 0
            deadline = time.monotonic() + 3.0
            i = 500
            while time.monotonic() < deadline:  # 3 s outage at about 1,000 events/s
                for _ in range(50):
                    i += 1
                    events.write(event("cam1", "det", i))
                    offered_during += 1
                time.sleep(0.05)
            assert not events.connected and events.failures >= 2
            assert events.buffered <= 2000 + 100
            assert events.dropped == offered_during - events.buffered
            own_pg_cluster.start()
            assert events.drain(20)
            assert events.connected
        finally:
            events.close()
        # A batch whose commit was in doubt when the server went away may have been stored: sent again, its rows
        # count as duplicates. Every event is accounted for, and the table holds each stored one once.
        assert events.written + events.duplicates + events.dropped == events.offered == i
        assert events.duplicates <= 100 and events.rejected == 0
        with db.read() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(t.events)).scalar()
            distinct = conn.execute(sa.select(sa.func.count()).select_from(
                sa.select(t.events.c.frame_id).distinct().subquery())).scalar()
        assert count == distinct == events.written + events.duplicates


def test_close_gives_up_after_its_timeout_and_counts_what_it_could_not_store(own_pg_cluster):
    url = own_pg_cluster.create_database()
    with Database.open(url, upgrade=True) as db:
        events = DatabaseEventSink(db, capacity=1000, batch_size=100, flush_interval_s=0.05, retry_max_s=0.2)
        own_pg_cluster.stop()
        for i in range(1, 301):
            events.write(event("cam1", "det", i))
        started = time.monotonic()
        events.close(timeout_s=1.0)
        assert time.monotonic() - started < 3.0
        assert events.dropped == 300 and events.written == 0
        events.write(event("cam1", "det", 999))  # after close: dropped, never an exception
        assert events.dropped == 301


def test_a_connection_killed_in_the_middle_of_a_batch_is_an_outage_and_the_batch_is_sent_again(postgres_url):
    with Database.open(postgres_url) as db:
        events = DatabaseEventSink(db, batch_size=100, flush_interval_s=0.05, retry_max_s=0.2)
        try:
            holder = db.engine.connect()
            holder.exec_driver_sql("BEGIN")
            holder.exec_driver_sql("LOCK TABLE events IN ACCESS EXCLUSIVE MODE")
            for i in range(1, 101):
                events.write(event("cam1", "det", i))
            events.flush()
            deadline = time.monotonic() + 10
            killed = 0
            with db.engine.connect() as killer:  # its own transaction per query: a fresh view of pg_stat_activity
                while not killed and time.monotonic() < deadline:  # the sink's backend, waiting for our lock
                    with killer.begin():
                        killed = killer.exec_driver_sql(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND application_name = 'ruth-ai' AND pid <> pg_backend_pid()").scalar()
                    time.sleep(0.02)
            assert killed == 1
            holder.rollback()
            holder.close()
            assert events.drain(10)
        finally:
            events.close()
        assert events.failures >= 1 and (events.written, events.dropped, events.rejected) == (100, 0, 0)
