"""The Unix-domain-socket server: connections, framing errors, and graceful shutdown.

One thread per connection, at most ``max_connections`` of them: a persistent
client gets the lowest possible latency (no hand-off between threads), and the
bound keeps a flood of clients from exhausting the daemon; the connection past
the bound is answered OVERLOADED and closed.

Socket ownership (who may bind the path) is ``socket_claim``'s. The socket is
created owner/group-only (0660) and removed on shutdown.

Shutdown: stop accepting, wake idle connections, let requests already read
finish and be answered until the drain deadline, then close what is left.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import threading
import time
from pathlib import Path
from typing import Optional

from ai_model_container.contract.schema import ErrorCode
from ai_model_container.contract.wire import (
    ConnectionClosed,
    MessageStream,
    MessageTooLarge,
    TruncatedMessage,
    frame,
)
from ai_model_container.daemon.service import ModelService
from ai_model_container.daemon.socket_claim import claim, lock_path

logger = logging.getLogger(__name__)

SOCKET_MODE = 0o660
LISTEN_BACKLOG = 128


class _Connection:
    """One client connection; also the Exchange through which its responses leave."""

    def __init__(self, sock: socket.socket, max_message_bytes: int) -> None:
        self.sock = sock
        self.stream = MessageStream(sock, max_message_bytes)
        self.lock = threading.Lock()
        self.busy = False
        self.answered = False
        self.closing = False

    def reply(self, payload: bytes, close: bool = False) -> bool:
        with self.lock:
            if self.answered or self.closing:
                return False
            self.answered = True
            try:
                if close:
                    # Called from the watchdog while the connection thread is busy: never block on a slow reader.
                    self.sock.send(frame(payload), socket.MSG_DONTWAIT)
                else:
                    self.sock.sendall(frame(payload))
            except OSError:
                close = True
            if close:
                self.closing = True
                _shutdown(self.sock)
            return True

    def begin_request(self) -> bool:
        """Mark the connection busy; False if shutdown already claimed it."""
        with self.lock:
            if self.closing:
                return False
            self.busy = True
            self.answered = False
            return True

    def end_request(self) -> None:
        with self.lock:
            self.busy = False

    def stop_reading_if_idle(self) -> None:
        """Wake a connection waiting for its next request; one already read is still answered."""
        with self.lock:
            if not self.busy:
                try:
                    self.sock.shutdown(socket.SHUT_RD)
                except OSError:
                    pass

    def force_close(self) -> None:
        with self.lock:
            self.closing = True
            _shutdown(self.sock)


class IPCServer:
    def __init__(self, socket_path: Path, service: ModelService) -> None:
        limits = service.config.limits
        self.socket_path = socket_path
        self.service = service
        self.max_connections = limits.max_connections
        self.max_message_bytes = limits.max_message_bytes
        self._listener: Optional[socket.socket] = None
        self._lock_file: Optional[int] = None
        self._connections: dict[_Connection, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        self._acceptor: Optional[threading.Thread] = None
        self._stopping = threading.Event()

    def start(self) -> None:
        """Claim the socket path and start accepting connections."""
        self.socket_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock_file = claim(self.socket_path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(str(self.socket_path))
            os.chmod(self.socket_path, SOCKET_MODE)  # before listen(): nobody can connect in between
            listener.listen(LISTEN_BACKLOG)
        except BaseException:
            listener.close()
            self._release()
            raise
        self._listener = listener
        self._acceptor = threading.Thread(target=self._accept_loop, name="ipc-acceptor", daemon=True)
        self._acceptor.start()

    def shutdown(self, drain_timeout_s: float = 10.0) -> None:
        """Stop accepting, finish requests in flight (up to the deadline), remove the socket."""
        if self._stopping.is_set():
            return
        self._stopping.set()
        self.service.drain()
        if self._listener is not None:
            _shutdown(self._listener)
            self._listener.close()
        if self._acceptor is not None:
            self._acceptor.join()
        self._release()
        with self._connections_lock:
            connections = dict(self._connections)
        for connection in connections:
            connection.stop_reading_if_idle()
        deadline = time.monotonic() + drain_timeout_s
        for connection, thread in connections.items():
            thread.join(max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                logger.warning("request still running after the %.1fs drain deadline; closing its connection", drain_timeout_s)
                connection.force_close()

    @property
    def connection_count(self) -> int:
        with self._connections_lock:
            return len(self._connections)

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except OSError as exc:
                if self._stopping.is_set() or exc.errno in (errno.EBADF, errno.EINVAL):
                    return
                logger.warning("accept failed: %s", exc)
                time.sleep(0.01)  # EMFILE and friends: back off instead of spinning
                continue
            connection = _Connection(sock, self.max_message_bytes)
            with self._connections_lock:
                if len(self._connections) >= self.max_connections:
                    refused = True
                else:
                    refused = False
                    thread = threading.Thread(target=self._serve, args=(connection,), name="ipc-connection", daemon=True)
                    self._connections[connection] = thread
            if refused:
                self.service.record_framing_error(ErrorCode.OVERLOADED)
                connection.reply(self.service.error_payload(
                    ErrorCode.OVERLOADED, f"too many connections (limit {self.max_connections})"), close=True)
                sock.close()
                continue
            thread.start()

    def _serve(self, connection: _Connection) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    body = connection.stream.receive()
                except (ConnectionClosed, TruncatedMessage, OSError):
                    return
                except MessageTooLarge as exc:
                    # The body was not read, so the stream cannot be resynchronised: answer, then close.
                    # begin_request first: the previous request on this connection left it marked answered.
                    self.service.record_framing_error(ErrorCode.MESSAGE_TOO_LARGE)
                    if connection.begin_request():
                        connection.reply(self.service.error_payload(ErrorCode.MESSAGE_TOO_LARGE, str(exc)), close=True)
                    return
                if not connection.begin_request():
                    return
                try:
                    self.service.handle(body, connection)
                except Exception:
                    logger.exception("internal error while handling a request")
                    connection.reply(self.service.error_payload(ErrorCode.INTERNAL, "internal error in the runtime", body))
                    self.service.record_framing_error(ErrorCode.INTERNAL)
                finally:
                    connection.end_request()
                if connection.closing:
                    return
        finally:
            connection.sock.close()
            with self._connections_lock:
                self._connections.pop(connection, None)

    def _release(self) -> None:
        """Remove the socket file and give up the ownership lock."""
        if self._lock_file is None:
            return
        try:
            os.unlink(self.socket_path)
        except FileNotFoundError:
            pass
        try:
            os.unlink(lock_path(self.socket_path))
        except FileNotFoundError:
            pass
        os.close(self._lock_file)
        self._lock_file = None


def _shutdown(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
