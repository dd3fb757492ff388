"""A VAS stand-in for many cameras: ``python -m bench.fleet_writer --prefix P --cameras N``.

Creates N rings (or one per ``--camera ID``, repeated: the cameras one host
exports) of tiny frames (64x48) and publishes each at ``--fps`` by advancing its slot record and header only (``FrameWriter.advance``): the
readers see the full ring protocol, and the writer stays cheap enough for a
thousand cameras. ``--phase in-step`` publishes every camera at the same
instant of each period, the way VAS paces cameras of one rate; ``staggered``
spreads them evenly over the period. Runs until SIGTERM or ``--duration``;
removes its rings on the way out.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time

from ruth_model_tools.frame_writer import FrameWriter

WIDTH, HEIGHT = 64, 48
SLOTS = 4


def camera_ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}_{index}" for index in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", help="name the cameras PREFIX_0 .. PREFIX_<N-1> (with --cameras N)")
    parser.add_argument("--cameras", type=int, default=0)
    parser.add_argument("--camera", action="append", default=[], metavar="ID", help="a camera by its id (repeatable)")
    parser.add_argument("--fps", type=float, default=10.0)
    parser.add_argument("--phase", choices=("in-step", "staggered"), default="staggered")
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args()
    if (args.prefix is None) != (args.cameras == 0):
        parser.error("--prefix and --cameras go together")
    cameras = (camera_ids(args.prefix, args.cameras) if args.prefix else []) + args.camera
    if not cameras:
        parser.error("give --prefix P --cameras N, or --camera ID")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    writers = []
    try:
        for camera_id in cameras:
            writers.append(FrameWriter(camera_id, WIDTH, HEIGHT, SLOTS))
        period = 1.0 / args.fps
        groups = 1 if args.phase == "in-step" else min(len(writers), 100)
        slices = [writers[index::groups] for index in range(groups)]
        start = time.monotonic()
        tick = 0
        while not stop.is_set():
            if args.duration is not None and time.monotonic() - start >= args.duration:
                break
            for index, group in enumerate(slices):
                stop.wait(max(0.0, start + (tick + index / groups) * period - time.monotonic()))
                now_ns = time.time_ns()
                for writer in group:
                    writer.advance(now_ns)
            tick += 1
    finally:
        for writer in writers:
            writer.close()


if __name__ == "__main__":
    main()
