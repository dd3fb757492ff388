"""IPC section: the runtime daemon against the plain baseline, same run, interleaved.

Both servers answer the same request with the same 10 detections. The
runtime's no-op model does not read pixels, but the runtime does everything
else it does in production: frame the message, validate the request against
the schema, resolve the frame reference to the camera's real 1920x1080 ring,
check the slot record and the seqlock, track the deadline, encode the
response. The baseline decodes JSON and encodes JSON, nothing more.

Measured per repeat, alternating which server goes first:
- round trip with one persistent client (p50, p99);
- throughput with 8 client processes on 8 cameras, and the server's CPU time
  per request over the same window.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import time
import uuid
from pathlib import Path
from statistics import median
from typing import Iterator

import numpy as np

from ai_model_container.contract.client import ModelClient, inference_request
from ai_model_container.contract.schema import InferenceResponse
from ai_model_container.contract.wire import MessageStream, encode_model
from ruth_model_tools.frame_writer import FrameWriter

from .load_clients import ClientPool
from .options import Options
from .payload import DETECTION_COUNT, FRAME_HEIGHT, FRAME_WIDTH
from .procs import ServerProcess, start_baseline, start_runtime
from .table import Row, SectionResult, Target

SECTION = "ipc"
LOAD_CLIENTS = 8
START_DELAY_S = 0.3
"""Time between ordering the clients and the measurement window: every client is busy by then."""


def run(options: Options) -> SectionResult:
    with _environment() as (servers, requests, notes):
        latency_count = int(options.scaled(8000, 2000))
        load_s = options.scaled(4.0, 1.5)
        p50s: dict[str, list[float]] = {name: [] for name in servers}
        p99s: dict[str, list[float]] = {name: [] for name in servers}
        rates: dict[str, list[float]] = {name: [] for name in servers}
        cpus: dict[str, list[float]] = {name: [] for name in servers}
        streams = {name: _connect(server.socket) for name, server in servers.items()}
        pool = ClientPool({name: server.socket for name, server in servers.items()}, requests)
        try:
            for repeat in range(options.repeats):
                order = list(servers) if repeat % 2 == 0 else list(reversed(servers))
                for name in order:
                    p50, p99 = _round_trips(streams[name], requests[0], latency_count)
                    p50s[name].append(p50)
                    p99s[name].append(p99)
                for name in order:
                    rate, cpu = _load(pool, servers[name], load_s)
                    rates[name].append(rate)
                    cpus[name].append(cpu)
                    servers[name].check_alive()
        finally:
            pool.close()
            for stream in streams.values():
                stream.sock.close()
        notes.extend(_runtime_errors(servers["runtime"]))
    ours, base = "runtime", "baseline"
    return SectionResult([
        Row(SECTION, "round trip p50, 1 client", "us", median(p50s[ours]), median(p50s[base]), base, Target("lower")),
        Row(SECTION, "round trip p99, 1 client", "us", median(p99s[ours]), median(p99s[base]), base, Target("lower")),
        Row(SECTION, f"throughput, {LOAD_CLIENTS} clients on {LOAD_CLIENTS} cameras", "req/s",
            median(rates[ours]), median(rates[base]), base, Target("higher")),
        Row(SECTION, f"server CPU per request, {LOAD_CLIENTS} clients", "us",
            median(cpus[ours]), median(cpus[base]), base, Target("lower")),
    ], notes)


@contextlib.contextmanager
def _environment() -> Iterator[tuple[dict[str, ServerProcess], list[bytes], list[str]]]:
    """Rings for the cameras, both servers, and one request per camera; all removed on the way out."""
    suffix = uuid.uuid4().hex[:8]
    model_id = f"bench_noop_{suffix}"
    socket_dir = Path(tempfile.mkdtemp(prefix="ruth-bench-", dir="/tmp"))
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, socket_dir, True)
        requests = []
        for index in range(LOAD_CLIENTS):
            camera_id = f"bench_{suffix}_{index}"
            writer = stack.enter_context(FrameWriter(camera_id, FRAME_WIDTH, FRAME_HEIGHT, slot_count=2))
            frame_id = writer.write_nv12(np.full((FRAME_HEIGHT * 3 // 2, FRAME_WIDTH), 128, dtype=np.uint8))
            request = inference_request(model_id, camera_id, frame_id, FRAME_WIDTH, FRAME_HEIGHT,
                                        timestamp_ns=time.time_ns())
            requests.append(encode_model(request))
        servers: dict[str, ServerProcess] = {}
        for name, start in (("baseline", lambda: start_baseline(socket_dir)),
                            ("runtime", lambda: start_runtime(socket_dir, model_id))):
            server = start()
            stack.callback(server.stop)
            servers[name] = server
        notes = [_check_answers(servers, requests)]
        yield servers, requests, notes


def _connect(path: Path) -> MessageStream:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(str(path))
    return MessageStream(sock)


def _check_answers(servers: dict[str, ServerProcess], requests: list[bytes]) -> str:
    """Both servers must answer every camera's request with 10 detections and no error."""
    sizes = {}
    for name, server in servers.items():
        stream = _connect(server.socket)
        try:
            for request in requests:
                stream.send(request)
                raw = stream.receive()
                response = InferenceResponse.model_validate_json(raw)
                if response.error_code is not None or len(response.detections) != DETECTION_COUNT:
                    raise RuntimeError(f"{name} server answered {response.error_code}: {response.error}")
                sizes[name] = len(raw)
        finally:
            stream.sock.close()
    return (f"ipc: request {len(requests[0])} B; response {sizes['runtime']} B (runtime), "
            f"{sizes['baseline']} B (baseline)")


def _round_trips(stream: MessageStream, request: bytes, count: int) -> tuple[float, float]:
    """p50 and p99 in microseconds of ``count`` back-to-back round trips, after a warm-up."""
    send, receive, clock = stream.send, stream.receive, time.perf_counter_ns
    for _ in range(min(500, count)):
        send(request)
        receive()
    samples = np.empty(count, dtype=np.int64)
    for index in range(count):
        started = clock()
        send(request)
        receive()
        samples[index] = clock() - started
    p50, p99 = np.percentile(samples, [50, 99]) / 1000.0
    return float(p50), float(p99)


def _load(pool: ClientPool, server: ServerProcess, duration_s: float) -> tuple[float, float]:
    """(requests per second, server CPU microseconds per request) of all clients on ``server``."""
    start_at = time.monotonic() + START_DELAY_S
    end_at = start_at + duration_s
    pool.run(server.name, start_at, end_at)
    time.sleep(max(0.0, start_at - time.monotonic()))
    cpu_before = server.cpu_seconds()
    time.sleep(max(0.0, end_at - time.monotonic()))
    cpu_after = server.cpu_seconds()
    total = sum(pool.counts())
    if total == 0:
        raise RuntimeError(f"no request completed on the {server.name} server")
    return total / duration_s, (cpu_after - cpu_before) / total * 1e6


def _runtime_errors(server: ServerProcess) -> list[str]:
    """The runtime's own stats: any error during the run makes its figures suspect, so say so."""
    with ModelClient(server.socket) as client:
        stats = client.stats()
    if stats.errors_by_code:
        return [f"ipc: WARNING the runtime reported errors during the run: {stats.errors_by_code}"]
    return [f"ipc: runtime served {stats.requests_total} requests, no errors "
            f"(server-side p50 {stats.latency.p50_ms} ms over the last {stats.latency.count})"]
