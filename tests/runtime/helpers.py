"""Raw-socket helpers and a controllable handler for the runtime tests.

The client in ai_model_container.client only speaks valid requests; these
helpers let a test send arbitrary bytes and read back exactly what the daemon
wrote, so a malformed reply or a missing one is seen as such.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from ai_model_container.contract.client import connect_unix, inference_request
from ai_model_container.contract.schema import (
    DescribeResponse,
    HealthResponse,
    InferenceResponse,
    StatsResponse,
)
from ai_model_container.contract.wire import LENGTH_PREFIX, frame
from ruth_model_tools.frame_writer import FrameWriter

AnyResponse = Union[InferenceResponse, HealthResponse, DescribeResponse, StatsResponse]
_BY_OP = {"health": HealthResponse, "describe": DescribeResponse, "stats": StatsResponse}

CONTROLLED_HANDLER = '''
"""A handler the test steers through the request's config.

gate: a directory; preprocess touches gate/entered while it holds the frame view,
      then waits for gate/release, so a test can act in the middle of a read.
sleep_s: infer sleeps this long.   fail: infer raises.   invalid: postprocess
returns a detection with confidence 2.0.
The one detection reports the mean luma the handler read, so a test can check
that the daemon read the right frame.
"""
import time
from pathlib import Path

from ai_model_container import Detection, InferenceHandler


class Handler(InferenceHandler):
    def preprocess(self, frame, request):
        options = dict(request.config)
        gate = options.get("gate")
        if gate:
            Path(gate, "entered").touch()
            deadline = time.monotonic() + 20
            while not Path(gate, "release").exists():
                if time.monotonic() > deadline:
                    raise RuntimeError("gate was never released")
                time.sleep(0.002)
        return {"mean_luma": float(frame.y.mean()), "options": options}

    def infer(self, inputs):
        options = inputs["options"]
        if options.get("sleep_s"):
            time.sleep(options["sleep_s"])
        if options.get("fail"):
            raise ValueError("the handler failed on purpose")
        return inputs

    def postprocess(self, outputs, inputs, frame, request):
        if outputs["options"].get("invalid"):
            return [{"class_id": 0, "class_name": "thing", "confidence": 2.0, "bbox": [0, 0, 1, 1]}]
        return [Detection(class_id=0, class_name="thing", confidence=1.0,
                          bbox=(0.0, 0.0, float(frame.width), float(frame.height)),
                          attributes={"mean_luma": outputs["mean_luma"]})]
'''


def parse_response(body: bytes) -> AnyResponse:
    """Validate a reply body as the response model its ``op`` names (inference when absent)."""
    raw = json.loads(body)
    assert isinstance(raw, dict), f"reply is not a JSON object: {body[:200]!r}"
    return _BY_OP.get(raw.get("op"), InferenceResponse).model_validate(raw)


class RawConnection:
    """A plain AF_UNIX connection that sends arbitrary bytes and reads framed replies."""

    def __init__(self, path: Path, timeout_s: float = 5.0) -> None:
        self.sock = connect_unix(path, timeout_s)
        self.sock.settimeout(timeout_s)
        self._buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_message(self, body: Union[bytes, str, dict]) -> None:
        if isinstance(body, dict):
            body = json.dumps(body)
        if isinstance(body, str):
            body = body.encode()
        self.sock.sendall(frame(body))

    def finish_sending(self) -> None:
        self.sock.shutdown(socket.SHUT_WR)

    def read_body(self) -> Optional[bytes]:
        """The next reply body, or None when the daemon closed the connection at a message boundary."""
        if not self._read_at_least(LENGTH_PREFIX.size):
            return None
        (length,) = LENGTH_PREFIX.unpack_from(self._buffer)
        assert length <= 16 << 20, f"implausible reply length {length}"
        assert self._read_at_least(LENGTH_PREFIX.size + length), "daemon closed part way through a reply"
        body = self._buffer[LENGTH_PREFIX.size:LENGTH_PREFIX.size + length]
        self._buffer = self._buffer[LENGTH_PREFIX.size + length:]
        return body

    def read_response(self) -> AnyResponse:
        body = self.read_body()
        assert body is not None, "the daemon closed the connection instead of answering"
        return parse_response(body)

    def is_closed_by_peer(self) -> bool:
        """True when the daemon has closed its end (EOF with nothing left to read)."""
        return self.read_body() is None

    def _read_at_least(self, size: int) -> bool:
        while len(self._buffer) < size:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                assert not self._buffer, f"daemon closed after {len(self._buffer)} bytes of a reply"
                return False
            self._buffer += chunk
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> "RawConnection":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def luma_for(frame_id: int, salt: int = 0) -> int:
    """A distinct, exactly representable luma value per frame, so answers prove which frame was read."""
    return 16 + (frame_id * 7 + salt * 31) % 220


def write_flat_frame(writer: FrameWriter, salt: int = 0) -> int:
    """Publish a frame whose Y plane is one value (luma_for) and chroma neutral; returns its id."""
    frame_id = writer.last_frame_id + 1
    nv12 = np.full((writer.height * 3 // 2, writer.width), 128, dtype=np.uint8)
    nv12[: writer.height] = luma_for(frame_id, salt)
    assert writer.write_nv12(nv12) == frame_id
    return frame_id


def request_dict(model_id: str, camera_id: str, frame_id: int, width: int, height: int,
                 config: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """A valid inference request as a plain dict, for tests that mutate it before sending."""
    return inference_request(model_id, camera_id, frame_id, width, height, config).model_dump(mode="json")


def wait_for_file(path: Path, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear within {timeout_s}s"
        time.sleep(0.002)
