"""Being told promptly that the registry or the assignments changed.

On PostgreSQL a trigger sends NOTIFY on ``ruth_ai_changes`` in the committing
transaction (migration 0002), so a listener hears about a change a few
milliseconds after it is committed, from whichever host made it. The
listener keeps one psycopg connection of its own (LISTEN needs a connection
outside the pool, in autocommit), and calls ``on_change`` for each
notification. Notifications sent while it was disconnected are lost, so it
also calls ``on_change`` after every (re)connect; it reconnects with backoff.

SQLite has no NOTIFY: there the reconciler polls the change revision (one
indexed read every watch interval), and ``listen_for_changes`` returns None.
The revision is also polled on PostgreSQL, as a safety net under the listener.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Optional

import psycopg

from .database import Database
from .schema import CHANGE_CHANNEL

logger = logging.getLogger(__name__)

RETRY_INITIAL_S = 0.1
RETRY_MAX_S = 2.0
POLL_S = 0.5
"""How often the listener looks at its stop flag while waiting for notifications."""


class ChangeListener:
    """LISTEN on ``ruth_ai_changes`` in a background thread; ``on_change()`` runs on that thread."""

    def __init__(self, db: Database, on_change: Callable[[], None], retry_max_s: float = RETRY_MAX_S) -> None:
        if not db.is_postgresql:
            raise ValueError("LISTEN/NOTIFY needs PostgreSQL; SQLite is polled")
        self.db = db
        self.on_change = on_change
        self.retry_max_s = retry_max_s
        self.notifications = 0
        self.connects = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._conn: Optional[psycopg.Connection[Any]] = None
        self._thread = threading.Thread(target=self._run, name="change-listener", daemon=True)

    def start(self) -> "ChangeListener":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(POLL_S * 4 + 1.0)

    def _connect(self) -> psycopg.Connection[Any]:
        args, params = self.db.engine.dialect.create_connect_args(self.db.engine.url)
        params = {k: v for k, v in params.items() if k != "context"}
        params.setdefault("connect_timeout", 5)
        conn = psycopg.connect(*args, **params, autocommit=True, application_name="ruth-ai-listener")
        conn.execute(f"LISTEN {CHANGE_CHANNEL}")
        return conn

    def _run(self) -> None:
        delay = RETRY_INITIAL_S
        failing = False
        while not self._stop.is_set():
            try:
                with self._connect() as conn:
                    self.connects += 1
                    self.connected.set()
                    if failing:
                        logger.warning("change listener: listening on %s again", self.db.location.display())
                    failing, delay = False, RETRY_INITIAL_S
                    self._changed()  # whatever happened while we were not listening
                    while not self._stop.is_set():
                        for _ in conn.notifies(timeout=POLL_S):
                            self.notifications += 1
                            self._changed()
            except psycopg.Error as exc:
                self.connected.clear()
                if not failing:
                    logger.error("change listener: %s: %s; retrying (the revision is still polled)",
                                 self.db.location.display(), str(exc).strip().splitlines()[0] if str(exc).strip() else exc)
                failing = True
                self._stop.wait(delay)
                delay = min(delay * 2, self.retry_max_s)
        self.connected.clear()

    def _changed(self) -> None:
        try:
            self.on_change()
        except Exception:  # the listener must outlive a failing callback
            logger.exception("change listener: on_change failed")


def listen_for_changes(db: Database, on_change: Callable[[], None]) -> Optional[ChangeListener]:
    """A started listener on PostgreSQL; None on SQLite (polled instead)."""
    if not db.is_postgresql:
        return None
    return ChangeListener(db, on_change).start()
