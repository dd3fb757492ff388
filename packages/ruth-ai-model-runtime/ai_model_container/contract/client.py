"""A client for one model daemon over one persistent connection.

Used by example_client, the CLI, the template's smoke test and, through its
connection pool, by Ruth AI Core. No retries here: an inference that failed is
reported, never sent twice (CONTRACT.md, "Error codes": dropped frames are normal).

Every connection is checked before anything is sent: the process on the other end
must be one the client trusts (``contract.peer``), so a socket squatted by another
user in a shared directory is refused with UntrustedDaemon, never believed.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any, Iterable, Optional, TypeVar

from pydantic import BaseModel, ValidationError

from ai_model_container.contract.peer import UntrustedPeer, allowed_uids, check_daemon
from ai_model_container.contract.schema import (
    DescribeResponse,
    HealthResponse,
    InferenceRequest,
    InferenceResponse,
    StatsResponse,
)
from ai_model_container.contract.shm_layout import segment_reference
from ai_model_container.contract.wire import DEFAULT_MAX_MESSAGE_BYTES, FramingError, MessageStream, encode_model

R = TypeVar("R", bound=BaseModel)

DEFAULT_CONNECT_TIMEOUT_S = 1.0
DEFAULT_REQUEST_TIMEOUT_S = 10.0


class ClientError(Exception):
    """The request got no valid response; the connection is closed."""


class ModelUnavailable(ClientError):
    """The daemon's socket is missing or refuses connections."""


class UntrustedDaemon(ModelUnavailable):
    """The socket is served by a process this client does not trust (another user bound it first)."""


class RequestTimedOut(ClientError):
    """No response within the request timeout."""


def connect_unix(path: Path, timeout_s: float) -> socket.socket:
    """A connected AF_UNIX stream socket; raises ModelUnavailable when none within ``timeout_s``.

    A Unix socket whose listen backlog is full refuses a connect with EAGAIN at once instead of
    letting it wait (unlike TCP), which happens when a burst of clients arrives together: try
    again until the timeout rather than call a busy daemon unavailable.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(max(deadline - time.monotonic(), 0.001))
        try:
            sock.connect(str(path))
            return sock
        except BlockingIOError:
            sock.close()
            if time.monotonic() >= deadline:
                raise ModelUnavailable(f"cannot connect to {path}: its listen backlog stayed full") from None
            time.sleep(0.002)
        except OSError as exc:
            sock.close()
            raise ModelUnavailable(f"cannot connect to {path}: {exc.strerror or exc}") from None


def inference_request(model_id: str, camera_id: str, frame_id: int, width: int, height: int,
                      config: Optional[dict[str, Any]] = None, timestamp_ns: Optional[int] = None) -> InferenceRequest:
    """Build the request for frame ``frame_id`` of ``camera_id``'s ring."""
    return InferenceRequest(
        frame_reference=segment_reference(camera_id),
        frame_metadata={"frame_id": frame_id, "width": width, "height": height, "timestamp_ns": timestamp_ns},
        camera_id=camera_id, model_id=model_id, timestamp=time.time(), config=config or {},
    )


class ModelClient:
    def __init__(self, socket_path: Path, connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
                 request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
                 daemon_uids: Optional[Iterable[int]] = None) -> None:
        """``daemon_uids``: the uids that may serve the socket; None means $RUTH_DAEMON_UIDS, else the
        users the socket's directory lets create entries (``contract.peer``)."""
        self.socket_path = Path(socket_path)
        self.connect_timeout_s = connect_timeout_s
        self.request_timeout_s = request_timeout_s
        self.max_message_bytes = max_message_bytes
        self.daemon_uids = None if daemon_uids is None else frozenset(daemon_uids)
        self._stream: Optional[MessageStream] = None

    @property
    def connected(self) -> bool:
        return self._stream is not None

    def connect(self) -> None:
        if self._stream is not None:
            return
        sock = connect_unix(self.socket_path, self.connect_timeout_s)
        try:
            check_daemon(sock, self.socket_path, allowed_uids(self.daemon_uids))
        except (UntrustedPeer, ValueError) as exc:  # ValueError: an unusable RUTH_DAEMON_UIDS
            sock.close()
            raise UntrustedDaemon(str(exc)) from None
        sock.settimeout(self.request_timeout_s)
        self._stream = MessageStream(sock, self.max_message_bytes, body_timeout_s=self.request_timeout_s)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.sock.close()
            self._stream = None

    def __enter__(self) -> "ModelClient":
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def exchange(self, body: bytes) -> bytes:
        """Send one raw request body and return the raw response body."""
        self.connect()
        assert self._stream is not None
        try:
            self._stream.send(body)
            return self._stream.receive()
        except TimeoutError:
            self.close()
            raise RequestTimedOut(f"no response from {self.socket_path} within {self.request_timeout_s}s") from None
        except (FramingError, OSError) as exc:
            self.close()
            raise ClientError(f"connection to {self.socket_path} failed: {exc}") from None

    def call(self, request: BaseModel, response_type: type[R]) -> R:
        raw = self.exchange(encode_model(request))
        try:
            return response_type.model_validate_json(raw)
        except ValidationError as exc:
            self.close()
            raise ClientError(f"malformed response from {self.socket_path}: {exc}") from None

    def infer(self, request: InferenceRequest) -> InferenceResponse:
        return self.call(request, InferenceResponse)

    def health(self) -> HealthResponse:
        return self._control("health", HealthResponse)

    def describe(self) -> DescribeResponse:
        return self._control("describe", DescribeResponse)

    def stats(self) -> StatsResponse:
        return self._control("stats", StatsResponse)

    def _control(self, op: str, response_type: type[R]) -> R:
        raw = self.exchange(b'{"op":"%s"}' % op.encode())
        try:
            return response_type.model_validate_json(raw)
        except ValidationError:
            pass
        # A daemon that could not understand the op answers with an InferenceResponse error.
        try:
            error = InferenceResponse.model_validate_json(raw)
        except ValidationError as exc:
            self.close()
            raise ClientError(f"malformed {op} response from {self.socket_path}: {exc}") from None
        raise ClientError(f"{op} failed: {error.error_code}: {error.error}")
