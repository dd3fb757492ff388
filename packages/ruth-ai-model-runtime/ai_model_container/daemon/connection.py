"""One client connection on the daemon's event loop: framing, ordered answers, and its deadlines.

A client may pipeline: write request after request and read the answers in
order (CONTRACT.md, "Framing"). Each request gets a ``Reply``, a one-shot slot
in the connection's queue of answers; the service fills it whenever the
answer is ready (at once for a control op, after the model for an inference),
and the connection writes the filled slots at the head of the queue, so
answers leave in request order whatever order they were produced in.

Nothing here ever blocks: sends go through the transport's buffer. What a
client can do to hold resources is bounded instead:

- a message must arrive whole within ``body_timeout_s`` of its first byte
  (a peer trickling one byte a second is dropped, not served forever);
- at most ``MAX_PIPELINED`` answers may be owed at once; past that the
  connection stops reading until the client reads some answers;
- answers that the client does not read fill the socket, then the
  transport's buffer; a connection whose buffer stays full for
  ``send_timeout_s`` is aborted, so a client that never reads cannot hold
  up the daemon's shutdown or its memory.

All methods run on the event loop thread.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Optional, cast

from ai_model_container.contract.schema import ErrorCode
from ai_model_container.contract.wire import MessageDecoder, frame

if TYPE_CHECKING:
    from ai_model_container.daemon.server import IPCServer

MAX_PIPELINED = 256
"""Answers one connection may owe at once before the daemon stops reading from it."""
WRITE_BUFFER_HIGH = 1 << 20
"""Bytes of unread answers buffered per connection before writing is considered blocked."""


class Reply:
    """The one answer owed to one request. ``send`` fills it once; later calls are ignored."""

    __slots__ = ("_connection", "payload", "close_after")

    def __init__(self, connection: "Connection") -> None:
        self._connection = connection
        self.payload: Optional[bytes] = None
        self.close_after = False

    @property
    def sent(self) -> bool:
        return self.payload is not None

    def send(self, payload: bytes, close: bool = False) -> bool:
        """Answer with ``payload`` (``close``: end the connection after it); False if already answered."""
        if self.payload is not None:
            return False
        self.payload, self.close_after = payload, close
        self._connection.flush()
        return True


class Connection(asyncio.Protocol):
    def __init__(self, server: "IPCServer") -> None:
        self._server = server
        self._service = server.service
        self._loop = server.loop
        self._decoder = MessageDecoder(server.max_message_bytes)
        self._replies: deque[Reply] = deque()
        self._transport: Optional[asyncio.Transport] = None
        self._close_when_answered = False
        """No more requests will be read: close once every answer owed is written."""
        self._reading_paused = False
        self._writing_blocked = False
        self._message_timer: Optional[asyncio.TimerHandle] = None
        self._send_timer: Optional[asyncio.TimerHandle] = None
        self.partial_since: Optional[float] = None
        """When the message now arriving started (monotonic), None between messages."""
        self.last_activity = time.monotonic()

    # -- what the server looks at -------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing owed and nothing half received: closing it loses nothing."""
        return not self._replies and self.partial_since is None

    @property
    def owes_answers(self) -> bool:
        return bool(self._replies)

    def abort(self) -> None:
        """Close now, dropping whatever is buffered."""
        if self._transport is not None:
            self._transport.abort()

    def refuse(self, payload: bytes) -> None:
        """Answer ``payload`` without reading anything, then close (the connection limit)."""
        reply = self._owe()
        self.stop_reading()
        reply.send(payload)

    def stop_reading(self) -> None:
        """No new requests (shutdown): answers already owed still go out, then the connection closes."""
        self._pause_reading()
        self._close_when_answered = True
        self.flush()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass asyncio's
        transport = self._transport
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH)
        self._server.admit(self)

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._cancel_timers()
        self._replies.clear()  # answers still being computed are dropped on arrival (Reply.send -> flush)
        self._server.forget(self)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.last_activity = now
        decoder = self._decoder
        bodies = decoder.feed(data)
        self._track_partial(now, completed=bool(bodies))
        for body in bodies:
            if self._close_when_answered:
                break
            reply = self._owe()
            try:
                self._service.handle(body, reply)
            except Exception:
                self._server.log_internal_error()
                self._service.record_framing_error(ErrorCode.INTERNAL)
                reply.send(self._service.error_payload(ErrorCode.INTERNAL, "internal error in the runtime", body))
        if decoder.failure is not None and not self._close_when_answered:
            # The oversized body was not read, so the stream cannot be resynchronised: answer, then close.
            self._service.record_framing_error(ErrorCode.MESSAGE_TOO_LARGE)
            reply = self._owe()
            self.stop_reading()
            reply.send(self._service.error_payload(ErrorCode.MESSAGE_TOO_LARGE, str(decoder.failure)))
            return
        if len(self._replies) >= MAX_PIPELINED:
            self._pause_reading()

    def eof_received(self) -> Optional[bool]:
        # The client will send nothing more; keep the connection open until what it is owed is written.
        self._cancel_message_timer()
        self.partial_since = None
        self.stop_reading()
        return True

    def pause_writing(self) -> None:
        self._writing_blocked = True
        self._pause_reading()
        if self._send_timer is None:
            self._send_timer = self._loop.call_later(self._server.send_timeout_s, self._send_timed_out)

    def resume_writing(self) -> None:
        self._writing_blocked = False
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
        self._maybe_resume_reading()

    # -- answers in order ---------------------------------------------------------------

    def _owe(self) -> Reply:
        reply = Reply(self)
        self._replies.append(reply)
        return reply

    def flush(self) -> None:
        """Write every answered reply at the head of the queue, in order; close when asked and done."""
        transport, replies = self._transport, self._replies
        if transport is None or transport.is_closing():
            replies.clear()  # the client is gone or being dropped: answers computed late go nowhere
            return
        while replies and replies[0].payload is not None:
            reply = replies.popleft()
            transport.write(frame(reply.payload))
            if reply.close_after:
                self._close_when_answered = True
                replies.clear()
        if self._close_when_answered and not replies:
            transport.close()
            return
        self._maybe_resume_reading()

    # -- deadlines and flow control -----------------------------------------------------

    def _track_partial(self, now: float, completed: bool) -> None:
        if not self._decoder.partial:
            self.partial_since = None
            self._cancel_message_timer()
        elif self.partial_since is None or completed:
            # A new message started in these bytes: its whole body is due body_timeout_s from now.
            self.partial_since = now
            self._cancel_message_timer()
            self._message_timer = self._loop.call_later(self._server.body_timeout_s, self._message_timed_out)

    def _message_timed_out(self) -> None:
        self._message_timer = None
        self._server.count_dropped("message_timeout")
        self.abort()

    def _send_timed_out(self) -> None:
        self._send_timer = None
        self._server.count_dropped("send_timeout")
        self.abort()

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None:
            self._transport.pause_reading()
            self._reading_paused = True

    def _maybe_resume_reading(self) -> None:
        if (self._reading_paused and not self._close_when_answered and not self._writing_blocked
                and len(self._replies) < MAX_PIPELINED // 2 and not self._server.stopping):
            self._reading_paused = False
            assert self._transport is not None
            self._transport.resume_reading()

    def _cancel_message_timer(self) -> None:
        if self._message_timer is not None:
            self._message_timer.cancel()
            self._message_timer = None

    def _cancel_timers(self) -> None:
        self._cancel_message_timer()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None
