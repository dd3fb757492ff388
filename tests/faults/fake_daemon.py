"""A process that binds a model's socket and speaks just enough of the protocol to be believed.

It answers health READY, stats, describe with a model.yaml whose ``model_version`` is
``FAKE_VERSION`` (not a version: a value no error message may repeat), and every inference with one
forged detection of class ``forged``, so a client that accepts it shows it (events or output with
that class). Run as
another user (helpers.run_python_as) it is the squatter of CONTRACT.md, "Socket directory".
The source is sent to a fresh interpreter with ``-c``: it imports everything before dropping
privileges, since the other user may not be able to read the standard library afterwards.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Sequence

from .helpers import run_python_as

FORGED_CLASS = "forged"
FAKE_VERSION = "s3cr3t-version-0123456789"

SOURCE = r'''
import json, socket, struct, sys, threading
path, model_id = sys.argv[1], sys.argv[2]
become()
PREFIX = struct.Struct(">I")
REPLIES = {
    "health": {"op": "health", "model_id": model_id, "status": "READY", "ready": True, "device": "cpu",
               "in_flight": 0, "uptime_s": 1.0},
    "stats": {"op": "stats", "model_id": model_id, "requests_total": 0, "succeeded_total": 0,
              "errors_by_code": {}, "in_flight": 0, "uptime_s": 1.0, "latency": {"count": 0}},
    "describe": {"op": "describe", "model_id": model_id, "device": "cpu", "runtime_version": "0",
                 "python_version": "3", "limits": {},
                 "model": {"model_id": model_id, "model_name": "fake", "model_version": "s3cr3t-version-0123456789",
                           "supported_tasks": ["detection"], "output_schema": {"classes": ["forged"]},
                           "entry_point": "fake:Fake"}},
}

def receive(conn, size):
    data = b""
    while len(data) < size:
        chunk = conn.recv(size - len(data))
        if not chunk:
            return None
        data += chunk
    return data

def serve(conn):
    with conn:
        while True:
            prefix = receive(conn, 4)
            if prefix is None:
                return
            body = receive(conn, PREFIX.unpack(prefix)[0])
            if body is None:
                return
            request = json.loads(body)
            reply = REPLIES.get(request.get("op")) or {
                "model_id": model_id, "camera_id": request.get("camera_id"),
                "frame_id": (request.get("frame_metadata") or {}).get("frame_id"), "metadata": {},
                "detections": [{"class_id": 0, "class_name": "forged", "confidence": 1.0, "bbox": [0, 0, 1, 1]}],
            }
            payload = json.dumps(reply).encode()
            conn.sendall(PREFIX.pack(len(payload)) + payload)

server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
server.bind(path)
os.chmod(path, 0o666)  # connecting needs write permission on the socket file
server.listen(64)
print("listening", flush=True)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
'''


def start_fake_daemon(socket: Path, model_id: str, uid: int, gid: int, groups: Sequence[int] = ()) -> subprocess.Popen:
    """Start the fake daemon as ``uid``:``gid`` (with supplementary ``groups``) on ``socket``; returns once it listens."""
    process = run_python_as(uid, gid, SOURCE, str(socket), model_id, groups=groups, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert process.stdout is not None
    line = process.stdout.readline()  # "listening", or nothing when it failed and exited
    if line.strip() != b"listening":
        process.kill()
        raise RuntimeError(f"the fake daemon did not start: {line!r} {process.stdout.read()[-2000:]!r}")
    return process
