"""Change notification: PostgreSQL NOTIFY reaches a listener within milliseconds, also after the server restarts."""

import threading
import time

import pytest

from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.storage.changes import ChangeListener, listen_for_changes
from ruth_ai_core.storage.database import Database

from .helpers import model_config


class Heard:
    def __init__(self):
        self.times = []
        self.event = threading.Event()

    def __call__(self):
        self.times.append(time.monotonic())
        self.event.set()

    def wait(self, timeout=5.0):
        ok = self.event.wait(timeout)
        self.event.clear()
        return ok


def test_sqlite_has_no_listener_and_is_polled(tmp_path):
    with Database.open(tmp_path / "r.sqlite3") as db:
        assert listen_for_changes(db, lambda: None) is None
        with pytest.raises(ValueError, match="SQLite is polled"):
            ChangeListener(db, lambda: None)


def test_a_change_from_another_connection_is_heard_at_once(postgres_url):
    heard = Heard()
    with Database.open(postgres_url) as db, ModelRegistry(postgres_url) as operator:
        listener = listen_for_changes(db, heard)
        try:
            assert listener.connected.wait(5) and heard.wait()  # the call after connecting
            delays = []
            for i in range(5):
                started = time.monotonic()
                operator.add(model_config(f"m{i}"), "t")
                assert heard.wait(), "no notification"
                delays.append(heard.times[-1] - started)
            assert max(delays) < 1.0, delays
            assert listener.notifications >= 5
        finally:
            listener.stop()


def test_the_listener_reconnects_after_the_server_restarts_and_says_so(own_pg_cluster):
    url = own_pg_cluster.create_database()
    heard = Heard()
    with Database.open(url, upgrade=True) as db:
        listener = ChangeListener(db, heard, retry_max_s=0.2).start()
        try:
            assert listener.connected.wait(5) and heard.wait()
            own_pg_cluster.stop()
            deadline = time.monotonic() + 5
            while listener.connected.is_set() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert not listener.connected.is_set()
            own_pg_cluster.start()
            assert heard.wait(10), "no call after reconnecting"  # changes made meanwhile may have been missed
            assert listener.connects == 2
            with ModelRegistry(db) as operator:
                operator.add(model_config("after"), "t")
            assert heard.wait()
        finally:
            listener.stop()
