"""``python -m bench.fuzz [--minutes N | --cases N] [--seed S]``: a raw-bytes fuzzer of the wire protocol.

Starts a real daemon (``ruth-model serve`` on the example model, which reads the pixels), gives it a
real ring with one frame, and sends it generated cases, each on its own connection: random bytes,
random bodies behind valid length prefixes, valid requests with bits flipped or slices cut, inserted
or repeated, length prefixes a little off or over the limit, hostile JSON (deep nesting, 5,000-digit
numbers, invalid UTF-8, lone surrogates, NUL), several messages in one write, a valid request split
into small writes, and connections dropped with a reset half way through a message. Every few cases
a valid request must still succeed.

After every case the daemon must answer health within the hang deadline; every reply must be a
well-formed response of the contract. The report gives cases, messages and replies, crashes (the
daemon exited), hangs (no reply or no health answer within the deadline), malformed replies, and
the daemon's descriptor count and resident memory at the start, the end and their maximum; exit
status 1 when anything failed or descriptors were left open. The same seed sends the same bytes.
tests/faults/test_wire_fuzz.py runs a few hundred cases of seed 7 in CI.
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import struct
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from pydantic import ValidationError

from ai_model_container.contract.client import ClientError, ModelClient, inference_request
from ai_model_container.contract.schema import DescribeResponse, HealthResponse, InferenceResponse, StatsResponse
from ai_model_container.contract.wire import DEFAULT_MAX_MESSAGE_BYTES, LENGTH_PREFIX, frame
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

from .proc_stats import fd_count, rss_kib
from .procs import start_runtime

HANG_TIMEOUT_S = 15.0
"""Longer than the daemon's 10 s stall deadline for a message cut short, which a case may trigger."""
FD_SLACK = 2
"""Descriptors the daemon may hold above its start once every fuzzing connection is closed."""
SAMPLE_EVERY = 50
VALID_EVERY = 25
WIDTH, HEIGHT = 320, 240

_RESPONSES = {"health": HealthResponse, "describe": DescribeResponse, "stats": StatsResponse}


@dataclass
class FuzzTarget:
    """A running daemon and a frame it can serve."""

    socket: Path
    pid: int
    model_id: str
    camera_id: str
    frame_id: int


@dataclass
class FuzzReport:
    seed: int
    cases: int = 0
    messages: int = 0
    replies: int = 0
    crashes: int = 0
    hangs: list[str] = field(default_factory=list)
    malformed: list[str] = field(default_factory=list)
    failed_valid: list[str] = field(default_factory=list)
    fds: list[int] = field(default_factory=list)
    rss_kib: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def fds_leaked(self) -> bool:
        return bool(self.fds) and self.fds[-1] > self.fds[0] + FD_SLACK

    @property
    def ok(self) -> bool:
        return not (self.crashes or self.hangs or self.malformed or self.failed_valid or self.fds_leaked)

    def render(self) -> str:
        rate = self.messages / self.elapsed_s if self.elapsed_s else 0.0
        lines = [
            f"seed {self.seed}: {self.cases} cases, {self.messages} messages sent ({rate:.0f}/s), "
            f"{self.replies} replies in {self.elapsed_s:.1f} s",
            f"crashes {self.crashes}, hangs {len(self.hangs)}, malformed replies {len(self.malformed)}, "
            f"valid requests failed {len(self.failed_valid)}",
        ]
        if self.fds:
            lines.append(f"daemon fds: start {self.fds[0]}, end {self.fds[-1]}, max {max(self.fds)}"
                         + ("  LEAK" if self.fds_leaked else ""))
        if self.rss_kib:
            lines.append(f"daemon RSS MiB: start {self.rss_kib[0] / 1024:.1f}, end {self.rss_kib[-1] / 1024:.1f}, "
                         f"max {max(self.rss_kib) / 1024:.1f}")
        for title, problems in (("hang", self.hangs), ("malformed", self.malformed), ("valid failed", self.failed_valid)):
            lines.extend(f"  {title}: {problem}" for problem in problems[:5])
        lines.append("verdict: " + ("OK" if self.ok else "FAILED"))
        return "\n".join(lines)


@dataclass
class Case:
    kind: str
    chunks: list[bytes]
    messages: int
    """Whole messages the chunks hold (each owed a reply unless one closes the connection)."""
    abrupt: bool = False
    """Drop the connection with a reset instead of reading the replies."""
    valid: bool = False
    """A request that must succeed."""


class CaseMaker:
    """Generates cases from one seeded random generator: the same seed, the same bytes."""

    def __init__(self, seed: int, valid_body: bytes, max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.rng = random.Random(seed)
        self.valid = valid_body
        self.max_message_bytes = max_message_bytes
        self._kinds: list[tuple[str, Callable[[], Case]]] = [
            ("random bytes", self._random_bytes), ("random body", self._random_body),
            ("mutated request", self._mutated), ("mutated request", self._mutated),
            ("prefix off", self._prefix_off), ("over the limit", self._over_limit),
            ("hostile json", self._hostile_json), ("pipelined", self._pipelined),
            ("split request", self._split), ("abrupt close", self._abrupt),
        ]

    def next(self, index: int) -> Case:
        if index % VALID_EVERY == 0:
            return Case("valid", [frame(self.valid)], 1, valid=True)
        return self.rng.choice(self._kinds)[1]()

    def _random_bytes(self) -> Case:
        return Case("random bytes", [self.rng.randbytes(self.rng.randrange(0, 2048))], 0)

    def _random_body(self) -> Case:
        return Case("random body", [frame(self.rng.randbytes(self.rng.randrange(0, 1024)))], 1)

    def _mutated(self) -> Case:
        return Case("mutated request", [frame(self.mutate(self.valid))], 1)

    def _prefix_off(self) -> Case:
        off = self.rng.choice([-8, -3, -1, 1, 2, 7, 100])
        return Case("prefix off", [LENGTH_PREFIX.pack(max(0, len(self.valid) + off)) + self.valid], 0)

    def _over_limit(self) -> Case:
        length = self.rng.randrange(self.max_message_bytes + 1, 2 ** 32)
        return Case("over the limit", [LENGTH_PREFIX.pack(length) + self.rng.randbytes(self.rng.randrange(0, 256))], 1)

    def _hostile_json(self) -> Case:
        depth = self.rng.choice([10, 1000, 100_000])
        bodies = [
            b"[" * depth + b"]" * depth,
            b'{"a":' * depth + b"1" + b"}" * depth,
            b'{"frame_metadata": {"frame_id": ' + b"9" * 5000 + b"}}",
            self.valid.replace(b'"camera_id":"', b'"camera_id":"\xff\xfe'),
            self.valid.replace(b'"camera_id":"', b'"camera_id":"\\ud800'),
            self.valid[:20] + b"\x00" + self.valid[20:],
            b'{"op":' + json.dumps(self.rng.choice(["health", "stats", "describe", "", "infer", "\u00e9", 1, None])).encode() + b"}",
            b'{"op":"health","op":"stats"}',
            b"\xef\xbb\xbf" + self.valid,
            json.dumps({"config": {"k" * 64: "v" * self.rng.randrange(0, 60_000)}}).encode(),
        ]
        return Case("hostile json", [frame(self.rng.choice(bodies))], 1)

    def _pipelined(self) -> Case:
        parts = [self.rng.choice([self._random_body, self._mutated, self._hostile_json])() for _ in range(self.rng.randrange(2, 6))]
        return Case("pipelined", [b"".join(chunk for part in parts for chunk in part.chunks)],
                    sum(part.messages for part in parts))

    def _split(self) -> Case:
        data = frame(self.valid)
        cuts = sorted(self.rng.sample(range(1, len(data)), min(5, len(data) - 1)))
        return Case("split request", [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])], 1, valid=True)

    def _abrupt(self) -> Case:
        data = frame(self.valid)
        return Case("abrupt close", [data[: self.rng.randrange(1, len(data))]], 0, abrupt=True)

    def mutate(self, body: bytes) -> bytes:
        data = bytearray(body)
        for _ in range(self.rng.randrange(1, 4)):
            operation = self.rng.randrange(5)
            position = self.rng.randrange(len(data) + 1)
            if operation == 0 and data:
                data[min(position, len(data) - 1)] ^= 1 << self.rng.randrange(8)
            elif operation == 1:
                del data[position:position + self.rng.randrange(1, 16)]
            elif operation == 2:
                data[position:position] = self.rng.randbytes(self.rng.randrange(1, 16))
            elif operation == 3:
                data[position:position] = data[position:position + self.rng.randrange(1, 32)]
            else:
                data[position:position] = json.dumps(self.rng.choice([None, True, -1, 2 ** 70, 1e308, "x" * 40, [], {}])).encode()
        return bytes(data)


class Fuzzer:
    def __init__(self, target: FuzzTarget, seed: int) -> None:
        self.target = target
        valid = inference_request(target.model_id, target.camera_id, target.frame_id, WIDTH, HEIGHT)
        self.cases = CaseMaker(seed, valid.model_dump_json().encode())
        self.report = FuzzReport(seed)

    def run(self, cases: Optional[int] = None, seconds: Optional[float] = None,
            progress: Optional[Callable[[FuzzReport], None]] = None) -> FuzzReport:
        """Send ``cases`` cases, or cases for ``seconds``; stops at the first crash."""
        report = self.report
        started = time.monotonic()
        index = 0
        while (cases is None or index < cases) and (seconds is None or time.monotonic() - started < seconds):
            case = self.cases.next(index)
            index += 1
            report.cases += 1
            report.messages += case.messages
            self._send(case)
            if not self._still_serving(case):
                break
            if index == 1 or index % SAMPLE_EVERY == 0:  # the baseline once the first request mapped the ring
                self._sample()
                if progress is not None:
                    report.elapsed_s = time.monotonic() - started
                    progress(report)
        self._settle()
        report.elapsed_s = time.monotonic() - started
        return report

    def _send(self, case: Case) -> None:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(HANG_TIMEOUT_S)
            sock.connect(str(self.target.socket))
            try:
                for chunk in case.chunks:
                    sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the daemon answered and hung up already (a length over the limit)
            if case.abrupt:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return
            try:
                sock.shutdown(socket.SHUT_WR)
            except OSError:
                pass
            self._read_replies(sock, case)

    def _read_replies(self, sock: socket.socket, case: Case) -> None:
        buffer = b""
        replies = 0
        while True:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                self.report.hangs.append(f"{case.kind}: no reply or close within {HANG_TIMEOUT_S}s")
                return
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            buffer += chunk
            while len(buffer) >= LENGTH_PREFIX.size:
                (length,) = LENGTH_PREFIX.unpack_from(buffer)
                if len(buffer) < LENGTH_PREFIX.size + length:
                    break
                body, buffer = buffer[LENGTH_PREFIX.size:LENGTH_PREFIX.size + length], buffer[LENGTH_PREFIX.size + length:]
                replies += 1
                self._check_reply(case, body)
        self.report.replies += replies
        if buffer:
            self.report.malformed.append(f"{case.kind}: {len(buffer)} bytes of a reply cut short")

    def _check_reply(self, case: Case, body: bytes) -> None:
        try:
            raw = json.loads(body)
            if not isinstance(raw, dict):
                raise ValueError("not an object")
            reply = _RESPONSES.get(raw.get("op"), InferenceResponse).model_validate(raw)
        except (ValueError, ValidationError) as exc:
            self.report.malformed.append(f"{case.kind}: {type(exc).__name__}: {body[:120]!r}")
            return
        if case.valid and isinstance(reply, InferenceResponse) and reply.error_code is not None:
            self.report.failed_valid.append(f"{case.kind}: {reply.error_code.value}: {reply.error}")

    def _still_serving(self, case: Case) -> bool:
        try:
            with ModelClient(self.target.socket, connect_timeout_s=HANG_TIMEOUT_S,
                             request_timeout_s=HANG_TIMEOUT_S) as client:
                client.health()
            return True
        except ClientError as exc:
            if rss_kib(self.target.pid) is None:
                self.report.crashes += 1
                self.report.hangs.append(f"after {case.kind}: the daemon is gone ({exc})")
            else:
                self.report.hangs.append(f"after {case.kind}: health did not answer: {exc}")
            return False

    def _sample(self) -> None:
        fds, rss = fd_count(self.target.pid), rss_kib(self.target.pid)
        if fds is not None and rss is not None:
            self.report.fds.append(fds)
            self.report.rss_kib.append(rss)

    def _settle(self) -> None:
        """Sample the descriptors once the daemon has closed the last fuzzing connection (it may take a moment)."""
        deadline = time.monotonic() + 5.0
        while True:
            fds = fd_count(self.target.pid)
            if fds is None or not self.report.fds or fds <= self.report.fds[0] + FD_SLACK or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        self._sample()


def serve_one_frame(camera_id: str) -> tuple[FrameWriter, int]:
    """A real ring with one synthetic frame the fuzzer's valid requests name."""
    writer = FrameWriter(camera_id, WIDTH, HEIGHT, 2)
    return writer, writer.write_bgr(synthetic_scene(1, WIDTH, HEIGHT)[0])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz", description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=None, help="run this long (default 1)")
    parser.add_argument("--cases", type=int, default=None, help="or this many cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--model-dir", type=Path, default=EXAMPLE_MODEL_DIR)
    args = parser.parse_args(argv)
    seconds = None if args.cases is not None and args.minutes is None else (args.minutes or 1.0) * 60
    model_id = f"fuzz_{uuid.uuid4().hex[:8]}"
    with tempfile.TemporaryDirectory(prefix="ruth-fuzz-", dir="/tmp") as directory:
        writer, frame_id = serve_one_frame(f"fuzz_{uuid.uuid4().hex[:8]}")
        server = start_runtime(Path(directory), model_id, args.model_dir)
        try:
            target = FuzzTarget(server.socket, server.pid, model_id, writer.camera_id, frame_id)

            def progress(report: FuzzReport) -> None:
                print(f"{report.elapsed_s:7.1f} s  {report.cases} cases  {report.messages} messages  "
                      f"fds {report.fds[-1]}  RSS {report.rss_kib[-1] / 1024:.1f} MiB", file=sys.stderr, flush=True)

            report = Fuzzer(target, args.seed).run(args.cases, seconds, progress)
        finally:
            server.stop()
            writer.close()
    print(f"python -m bench.fuzz {' '.join(argv)}".rstrip())
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
