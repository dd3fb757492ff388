"""The plain baseline: socketserver, one thread per connection, struct + json, no validation.

What a first implementation of the model socket looks like (research/ipc-anchors.md,
"Python, socketserver thread per connection, struct + json"): read a 4-byte
big-endian length and the JSON body through the buffered socket file, decode
it, echo camera_id and frame_id into a fixed 10-detection response and write
it back. No schema, no limits, no frame access. The runtime must be at least
this fast while doing all of that.

    python -m bench.baseline_server /tmp/some.sock
"""

from __future__ import annotations

import json
import os
import signal
import socketserver
import struct
import sys
from types import FrameType
from typing import Any, Optional

from bench.payload import FRAME_HEIGHT, FRAME_WIDTH, detections

PREFIX = struct.Struct(">I")

RESPONSE_TEMPLATE: dict[str, Any] = {
    "protocol_version": 1,
    "error": None,
    "error_code": None,
    "model_id": "bench_baseline",
    "camera_id": None,
    "frame_id": None,
    "detections": detections(),
    "metadata": {"model_version": "1.0.0", "device": "cpu", "width": FRAME_WIDTH, "height": FRAME_HEIGHT},
}


class PlainHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        while True:
            header = self.rfile.read(PREFIX.size)
            if len(header) < PREFIX.size:
                return
            (length,) = PREFIX.unpack(header)
            request = json.loads(self.rfile.read(length))
            response = dict(RESPONSE_TEMPLATE, camera_id=request.get("camera_id"),
                            frame_id=request.get("frame_metadata", {}).get("frame_id"))
            payload = json.dumps(response).encode()
            self.wfile.write(PREFIX.pack(len(payload)) + payload)


class PlainServer(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python -m bench.baseline_server SOCKET_PATH")
    path = argv[0]
    server = PlainServer(path, PlainHandler)

    def stop(_signum: int, _frame: Optional[FrameType]) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        os.unlink(path)


if __name__ == "__main__":
    main(sys.argv[1:])
