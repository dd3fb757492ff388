"""The Unix-domain-socket server: an event loop that owns every connection, and graceful shutdown.

One event loop thread (uvloop when installed) reads, frames and validates
every request of every connection and writes every answer; the model runs on
the service's worker threads, never on the loop. So one client cannot stall
another, pipelined requests from many connections reach the model together
(where it can batch them), and no send ever blocks: a client that does not
read fills its own buffer and is dropped after ``send_timeout_s``.

At most ``limits.max_connections`` connections are open. When one more
arrives, the longest-idle connection (nothing owed, nothing half sent) is
closed to admit it, else the one stuck longest part way through a message;
only when every connection is busy with requests is the newcomer answered
OVERLOADED and closed. Idle or trickling clients therefore cannot lock others
out (CONTRACT.md, "Timeouts, concurrency and shutdown").

Socket ownership (who may bind the path) is ``socket_claim``'s. A server either
claims and binds its path itself, creating the socket owner/group-only (0660)
and removing it on shutdown, or is handed a listening socket someone else
owns (``serve-all`` hands each model's to its process and its stand-in) and
leaves the path alone.

Shutdown: stop accepting and remove the socket, stop reading requests, let
the answers already owed go out until the drain deadline, then drop what is
left and stop the service.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Optional, Protocol

from ai_model_container.contract.model_config import Limits
from ai_model_container.contract.schema import ErrorCode
from ai_model_container.contract.wire import DEFAULT_BODY_TIMEOUT_S
from ai_model_container.daemon.connection import Connection, Reply
from ai_model_container.daemon.socket_claim import claim, lock_path

logger = logging.getLogger(__name__)

SOCKET_MODE = 0o660
LISTEN_BACKLOG = 1024
DEFAULT_SEND_TIMEOUT_S = 10.0
"""How long a connection's answers may sit unread in a full buffer before it is dropped."""


class Service(Protocol):
    """What the server needs of the request logic behind it (``ModelService``, the stand-in)."""

    limits: Limits

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start serving; called once the loop runs. Answers from other threads go through ``loop``."""

    def handle(self, body: bytes, reply: Reply) -> None:
        """Answer one request body through ``reply``, now or later; called on the loop thread."""

    def drain(self) -> None:
        """Shutdown has begun: report DRAINING, accept nothing new."""

    def stop(self) -> None:
        """Stop the service's threads; called after the connections are closed."""

    def error_payload(self, code: ErrorCode, message: str, body: bytes = b"") -> bytes:
        """An error answer carrying ``code``, echoing what can be salvaged from ``body``."""

    def record_framing_error(self, code: ErrorCode) -> None:
        """Count an answer the server gave on its own (framing, connection limit)."""


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop when it is installed (a third of the CPU per message), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def bind_listener(path: Path) -> socket.socket:
    """A non-blocking listening socket at ``path`` (already claimed), mode 0660 before anyone can connect."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(str(path))
        os.chmod(path, SOCKET_MODE)  # before listen(): nobody can connect in between
        listener.listen(LISTEN_BACKLOG)
        listener.setblocking(False)
    except BaseException:
        listener.close()
        raise
    return listener


def release_socket(path: Path, lock_file: int) -> None:
    """Remove a claimed socket and its lock file, then give up the claim."""
    for owned in (path, lock_path(path)):
        try:
            os.unlink(owned)
        except FileNotFoundError:
            pass
    os.close(lock_file)


class IPCServer:
    def __init__(self, socket_path: Path, service: Service, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
                 send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S, listener: Optional[socket.socket] = None) -> None:
        """``listener``: a listening socket for ``socket_path`` that another process or object owns."""
        self.socket_path = socket_path
        self.service = service
        self.max_connections = service.limits.max_connections
        self.max_message_bytes = service.limits.max_message_bytes
        self.body_timeout_s = body_timeout_s
        self.send_timeout_s = send_timeout_s
        self.loop = new_event_loop()
        self.stopping = False
        self.dropped: Counter[str] = Counter()
        """Connections the server closed on its own, by reason (evicted, message_timeout, send_timeout)."""
        self._connections: dict[Connection, None] = {}
        self._all_closed = asyncio.Event()
        self._listener: Optional[asyncio.AbstractServer] = None
        self._given_listener = listener
        self._lock_file: Optional[int] = None
        self._thread: Optional[threading.Thread] = None

    # -- lifecycle (any thread) ---------------------------------------------------------

    def start(self) -> None:
        """Claim the socket path (unless given a listener), start the loop and the service, and accept."""
        if self._given_listener is not None:
            listener = self._given_listener
            listener.setblocking(False)
        else:
            self.socket_path.parent.mkdir(parents=True, exist_ok=True)
            self._lock_file = claim(self.socket_path)
            try:
                listener = bind_listener(self.socket_path)
            except BaseException:
                self._release()
                raise
        self._thread = threading.Thread(target=self._run_loop, name="ipc-loop", daemon=True)
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(listener), self.loop).result()
        self.service.start(self.loop)

    def shutdown(self, drain_timeout_s: float = 10.0) -> None:
        """Stop accepting, write the answers owed (up to the deadline), stop the service, remove the socket."""
        if self.stopping or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._drain(drain_timeout_s), self.loop).result()
        self.service.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    # -- called by connections (loop thread) --------------------------------------------

    def admit(self, connection: Connection) -> None:
        """A new connection: make room for it, or refuse it when every other one is busy."""
        if self.stopping:
            connection.abort()
            return
        if len(self._connections) >= self.max_connections:
            victim = self._victim()
            if victim is None:
                self.service.record_framing_error(ErrorCode.OVERLOADED)
                connection.refuse(self.service.error_payload(
                    ErrorCode.OVERLOADED, f"too many connections (limit {self.max_connections}), all busy"))
                return
            self.dropped["evicted"] += 1
            self.forget(victim)
            victim.abort()
        self._connections[connection] = None
        self._all_closed.clear()

    def forget(self, connection: Connection) -> None:
        self._connections.pop(connection, None)
        if not self._connections:
            self._all_closed.set()

    def count_dropped(self, reason: str) -> None:
        self.dropped[reason] += 1

    def log_internal_error(self) -> None:
        logger.exception("internal error while handling a request")

    # -- internals (loop thread) --------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    async def _listen(self, listener: socket.socket) -> None:
        self._listener = await self.loop.create_unix_server(lambda: Connection(self), sock=listener,
                                                            backlog=LISTEN_BACKLOG)

    def _victim(self) -> Optional[Connection]:
        """The connection to close for a newcomer: the longest idle, else the longest half-sent message."""
        idle = [c for c in self._connections if c.idle]
        if idle:
            return min(idle, key=lambda c: c.last_activity)
        trickling = [c for c in self._connections if c.partial_since is not None and not c.owes_answers]
        if trickling:
            return min(trickling, key=lambda c: c.partial_since or 0.0)
        return None

    async def _drain(self, drain_timeout_s: float) -> None:
        self.stopping = True
        self.service.drain()
        if self._listener is not None:
            self._listener.close()
        self._release()
        for connection in list(self._connections):
            connection.stop_reading()
        if self._connections:
            try:
                await asyncio.wait_for(self._all_closed.wait(), drain_timeout_s)
            except asyncio.TimeoutError:
                logger.warning("%d connection(s) still owed answers after the %.1fs drain deadline; closing them",
                               len(self._connections), drain_timeout_s)
        for connection in list(self._connections):
            connection.abort()
        started = time.monotonic()
        while self._connections and time.monotonic() - started < 1.0:
            await asyncio.sleep(0.005)  # let the aborted transports report connection_lost

    def _release(self) -> None:
        """Remove the socket file and give up the ownership lock, if this server claimed them."""
        if self._lock_file is not None:
            release_socket(self.socket_path, self._lock_file)
            self._lock_file = None
