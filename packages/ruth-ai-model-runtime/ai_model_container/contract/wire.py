"""Message framing on the model socket: the only module that knows the byte layout.

A message is a 4-byte big-endian unsigned length N followed by N bytes of
UTF-8 JSON (one object). Connections are persistent: a client writes request
after request and reads exactly one response for each, in order.

Two readers share these rules. ``MessageStream`` is the blocking one (the
client): one ``recv`` and one copy per message in the common case of a whole
message arriving in one segment, and ``body_timeout_s`` armed only when a
message arrives in pieces. ``MessageDecoder`` is the event-driven one (the
daemon's and Ruth AI Core's event loops): it is fed whatever bytes arrived and
returns the whole messages among them; the caller owns the clock.
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

from pydantic import BaseModel

LENGTH_PREFIX = struct.Struct(">I")
DEFAULT_MAX_MESSAGE_BYTES = 1 << 20
"""Largest body either side accepts unless configured otherwise (1 MiB)."""

DEFAULT_BODY_TIMEOUT_S = 10.0
_RECV_CHUNK = 65536


class FramingError(Exception):
    """The byte stream broke the framing rules; the connection cannot be trusted."""


class ConnectionClosed(FramingError):
    """The peer closed the connection cleanly, between two messages."""


class TruncatedMessage(FramingError):
    """The peer closed or stalled part way through a message."""


class MessageTooLarge(FramingError):
    """The length prefix announced more bytes than the configured maximum."""

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"message of {length} bytes exceeds the limit of {limit} bytes")
        self.length = length
        self.limit = limit


def frame(payload: bytes) -> bytes:
    """Prefix ``payload`` with its length, ready to send."""
    return LENGTH_PREFIX.pack(len(payload)) + payload


def encode_model(message: BaseModel) -> bytes:
    """Serialize a schema model to the JSON body of a message (no prefix)."""
    return type(message).__pydantic_serializer__.to_json(message)


class MessageDecoder:
    """Splits a byte stream into message bodies as the bytes arrive, for event-driven readers.

    ``feed`` returns every message completed by the new bytes; what remains of
    a message that has started stays buffered. A length prefix over the limit
    breaks the stream for good: the body will not be read, so it cannot be
    resynchronised. ``feed`` then still returns the messages that came before
    it and sets ``failure``; the caller answers those, then the failure, and
    closes.
    """

    __slots__ = ("max_message_bytes", "failure", "_buffer")

    def __init__(self, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.max_message_bytes = max_message_bytes
        self.failure: Optional[MessageTooLarge] = None
        self._buffer = b""

    @property
    def partial(self) -> bool:
        """True while part of a message (prefix or body) is buffered."""
        return bool(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        if self.failure is not None:
            return []
        buffer = self._buffer + data if self._buffer else data
        messages = []
        position, size = 0, len(buffer)
        prefix = LENGTH_PREFIX.size
        while size - position >= prefix:
            (length,) = LENGTH_PREFIX.unpack_from(buffer, position)
            if length > self.max_message_bytes:
                self.failure = MessageTooLarge(length, self.max_message_bytes)
                self._buffer = b""
                return messages
            end = position + prefix + length
            if end > size:
                break
            messages.append(buffer[position + prefix:end])
            position = end
        self._buffer = buffer[position:] if position < size else b""
        return messages


class MessageStream:
    """Reads and writes framed messages on one connected stream socket.

    Not thread-safe: one reader and one writer at a time, which the
    request/response discipline of the protocol guarantees.
    """

    def __init__(
        self,
        sock: socket.socket,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
    ) -> None:
        self.sock = sock
        self.max_message_bytes = max_message_bytes
        self.body_timeout_s = body_timeout_s
        self._buffer = bytearray()

    def send(self, payload: bytes) -> None:
        """Send one message whose body is ``payload``."""
        self.sock.sendall(frame(payload))

    def receive(self) -> bytes:
        """Return the next message body.

        Raises ConnectionClosed on a clean close between messages,
        TruncatedMessage on a close or stall mid-message, MessageTooLarge when
        the prefix exceeds the limit, and lets socket timeouts set by the caller
        propagate as ``TimeoutError`` while waiting for a new message.
        """
        if not self._buffer:
            # The common case: exactly one whole message is waiting. One recv, one copy.
            chunk = self.sock.recv(_RECV_CHUNK)
            if not chunk:
                raise ConnectionClosed("peer closed the connection")
            if len(chunk) > LENGTH_PREFIX.size:
                (length,) = LENGTH_PREFIX.unpack_from(chunk)
                if length == len(chunk) - LENGTH_PREFIX.size and length <= self.max_message_bytes:
                    return chunk[LENGTH_PREFIX.size:]
            self._buffer += chunk
        if len(self._buffer) < LENGTH_PREFIX.size:
            self._fill_rest(LENGTH_PREFIX.size)
        (length,) = LENGTH_PREFIX.unpack_from(self._buffer)
        if length > self.max_message_bytes:
            raise MessageTooLarge(length, self.max_message_bytes)
        end = LENGTH_PREFIX.size + length
        if len(self._buffer) < end:
            self._fill_rest(end)
        body = bytes(self._buffer[LENGTH_PREFIX.size:end])
        del self._buffer[:end]
        return body

    def _fill_rest(self, want: int) -> None:
        """Receive until ``want`` bytes are buffered; a message has started, so the wait is bounded."""
        previous: Optional[float] = self.sock.gettimeout()
        self.sock.settimeout(self.body_timeout_s)
        try:
            while len(self._buffer) < want:
                try:
                    chunk = self.sock.recv(_RECV_CHUNK)
                except TimeoutError as exc:
                    raise TruncatedMessage(
                        f"no data for {self.body_timeout_s}s part way through a message"
                    ) from exc
                if not chunk:
                    raise TruncatedMessage(
                        f"peer closed after {len(self._buffer)} of {want} bytes of a message"
                    )
                self._buffer += chunk
        finally:
            self.sock.settimeout(previous)
