"""Issue 7, item 5: idle or trickling connections cannot lock a fresh client out.

Before: 2,000 idle connections, or 200 clients sending one byte a second, held all
64 connection slots, and a new client got OVERLOADED for as long as that lasted
(the 10 s stall rule was per ``recv``, so one byte a second never tripped it).
"""

from __future__ import annotations

import resource
import threading
import time

import pytest
from runtime.helpers import RawConnection

from ai_model_container.contract.client import connect_unix
from ai_model_container.contract.wire import LENGTH_PREFIX

pytestmark = pytest.mark.slow


def fresh_client_round_trip(path) -> float:
    """Seconds from connect to a READY health answer for a brand-new client."""
    started = time.monotonic()
    with RawConnection(path, timeout_s=5.0) as connection:
        connection.send_message({"op": "health"})
        assert connection.read_response().ready
    return time.monotonic() - started


def test_two_thousand_idle_connections_do_not_lock_out_a_fresh_client(start_daemon):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 4096)), hard))
    daemon = start_daemon()
    idle = []
    try:
        for _ in range(2000):
            idle.append(connect_unix(daemon.socket, 5.0))
        worst = max(fresh_client_round_trip(daemon.socket) for _ in range(5))
        assert worst < 1.0, f"a fresh client waited {worst:.2f}s behind 2,000 idle connections"
    finally:
        for connection in idle:
            connection.close()
    assert daemon.process.poll() is None


def test_clients_trickling_a_byte_a_second_do_not_lock_out_a_fresh_client_and_are_dropped(start_daemon):
    daemon = start_daemon()
    body = b'{"op": "health"}'
    message = LENGTH_PREFIX.pack(len(body)) + body
    tricklers = [RawConnection(daemon.socket, timeout_s=15) for _ in range(200)]
    stop = threading.Event()

    def trickle() -> None:
        position = 0
        while not stop.is_set() and position < len(message):
            for connection in tricklers:
                try:
                    connection.send(message[position:position + 1])
                except OSError:
                    pass  # dropped by the daemon: what we want
            position += 1
            stop.wait(1.0)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        time.sleep(2.5)
        worst = max(fresh_client_round_trip(daemon.socket) for _ in range(5))
        assert worst < 1.0, f"a fresh client waited {worst:.2f}s behind 200 trickling clients"
        time.sleep(9.0)  # past 10 s since each trickler's first byte
        dropped = sum(1 for connection in tricklers if connection.is_closed_by_peer())
        assert dropped == len(tricklers), f"only {dropped} of {len(tricklers)} tricklers were dropped"
    finally:
        stop.set()
        thread.join(5)
        for connection in tricklers:
            connection.close()
