"""One pipelined connection from the core to a model daemon, on the core's event loop.

Requests go out as soon as they are made, without waiting for earlier
answers; the daemon answers in request order (CONTRACT.md, "Framing"), so
each answer belongs to the oldest request still owed one. A handful of these
connections carry every request the core has in flight for a model.

Every request carries a deadline (``request_timeout_s`` after it was sent).
When the oldest one passes it, the answers on this connection can no longer
be trusted to line up (a late answer would be taken for the next request's),
so the connection is dropped and everything it still owes fails; the route
decides what that says about the model's health.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Callable, Optional, cast

from ai_model_container.contract.wire import MessageDecoder, frame

from .events import CoreErrorCode

logger = logging.getLogger(__name__)

Failure = tuple[CoreErrorCode, str]
"""Why a request will get no answer: the core's own error code and a message."""
Answer = Callable[[Optional[bytes], Optional[Failure]], None]
"""Called once per request: (response body, None), or (None, the failure)."""


class LinkClosed(Exception):
    """The connection is gone; the request was not sent."""


class ModelLink(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, request_timeout_s: float, max_message_bytes: int,
                 on_lost: Callable[["ModelLink", str], None]) -> None:
        self._loop = loop
        self._request_timeout_s = request_timeout_s
        self._decoder = MessageDecoder(max_message_bytes)
        self._on_lost = on_lost
        self._owed: deque[tuple[float, Answer]] = deque()
        self._transport: Optional[asyncio.Transport] = None
        self._outgoing: list[bytes] = []
        """Requests made during this turn of the loop, written together: one syscall per burst."""
        self._timer: Optional[asyncio.TimerHandle] = None
        self.closed = False
        self.close_reason: Optional[str] = None

    @property
    def owed(self) -> int:
        """Requests sent and not yet answered."""
        return len(self._owed)

    @property
    def socket(self) -> object:
        return self._transport.get_extra_info("socket") if self._transport is not None else None

    def send(self, body: bytes, answer: Answer) -> None:
        if self.closed or self._transport is None:
            raise LinkClosed(self.close_reason or "not connected")
        if not self._outgoing:
            self._loop.call_soon(self._write_out)
        self._outgoing.append(frame(body))
        self._owed.append((time.monotonic() + self._request_timeout_s, answer))
        if self._timer is None:
            self._timer = self._loop.call_at(self._loop.time() + self._request_timeout_s, self._check_deadline)

    def close(self, reason: str, first: CoreErrorCode = CoreErrorCode.CONNECTION_FAILED) -> None:
        """Drop the connection; the oldest request owed an answer fails with ``first``, the rest as broken."""
        if self.closed:
            return
        self.closed, self.close_reason = True, reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None:
            self._transport.abort()
        owed, self._owed = self._owed, deque()
        for index, (_, answer) in enumerate(owed):
            answer(None, (first if index == 0 else CoreErrorCode.CONNECTION_FAILED, reason))
        self._on_lost(self, reason)

    def _write_out(self) -> None:
        outgoing, self._outgoing = self._outgoing, []
        if self._transport is not None and not self.closed:
            self._transport.write(b"".join(outgoing))

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        decoder = self._decoder
        for body in decoder.feed(data):
            if not self._owed:
                self.close("the daemon sent an answer nobody asked for")
                return
            _, answer = self._owed.popleft()
            answer(body, None)
        if decoder.failure is not None:
            self.close(f"the daemon's answer broke the framing: {decoder.failure}")

    def eof_received(self) -> Optional[bool]:
        self.close("the daemon closed the connection")
        return False

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.close(f"connection lost: {exc}" if exc else "the daemon closed the connection")

    # -- deadlines ----------------------------------------------------------------------

    def _check_deadline(self) -> None:
        self._timer = None
        if not self._owed:
            return
        deadline, _ = self._owed[0]
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            self.close(f"no answer within {self._request_timeout_s:g} s", CoreErrorCode.REQUEST_TIMEOUT)
            return
        self._timer = self._loop.call_at(self._loop.time() + remaining, self._check_deadline)
