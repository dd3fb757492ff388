"""Client processes that load a server: each holds one persistent connection per server.

Started once per run and reused for every repeat, so process start-up never
lands inside a measurement. A worker is told which server to hit and a time
window on the shared monotonic clock; it keeps its connection busy from the
moment it gets the order, counts the requests completed inside the window,
and reports the count. All clients send the same pre-encoded request bytes to
both servers through the runtime's own framing (wire.MessageStream), so the
client-side cost is identical for both.
"""

from __future__ import annotations

import multiprocessing
import socket
import time
from multiprocessing.connection import Connection
from pathlib import Path

from ai_model_container.contract.wire import MessageStream


def _worker(orders: Connection, sockets: dict[str, Path], request: bytes) -> None:
    streams = {}
    for name, path in sockets.items():
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(str(path))
        streams[name] = MessageStream(sock)
    orders.send("ready")
    while True:
        order = orders.recv()
        if order is None:
            break
        name, start_at, end_at = order
        stream = streams[name]
        send, receive, now = stream.send, stream.receive, time.monotonic
        while now() < start_at:
            send(request)
            receive()
        count = 0
        while now() < end_at:
            send(request)
            receive()
            count += 1
        orders.send(count)
    for stream in streams.values():
        stream.sock.close()


class ClientPool:
    """``len(requests)`` client processes, client i sending ``requests[i]``."""

    def __init__(self, sockets: dict[str, Path], requests: list[bytes]) -> None:
        context = multiprocessing.get_context("spawn")
        self._pipes: list[Connection] = []
        self._processes = []
        for request in requests:
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, sockets, request), daemon=True)
            process.start()
            child.close()
            self._pipes.append(parent)
            self._processes.append(process)
        for pipe in self._pipes:
            if pipe.recv() != "ready":
                raise RuntimeError("a load client failed to connect")

    def run(self, server: str, start_at: float, end_at: float) -> None:
        """Order every client to load ``server`` during [start_at, end_at) (monotonic clock)."""
        for pipe in self._pipes:
            pipe.send((server, start_at, end_at))

    def counts(self) -> list[int]:
        """Requests each client completed inside the window of the last ``run``."""
        return [pipe.recv() for pipe in self._pipes]

    def close(self) -> None:
        for pipe in self._pipes:
            try:
                pipe.send(None)
            except OSError:
                pass
        for process in self._processes:
            process.join(5)
            if process.is_alive():
                process.kill()
                process.join()
