"""``python -m bench [--quick] [--repeats N] [--only SECTION ...]``: run the benchmarks, print one table."""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path
from typing import Callable

from . import batching, core_capacity, events_db, frames, ipc, multinode, reconcile_delay
from .options import Options
from .table import Row, SectionResult, render

SECTIONS: dict[str, Callable[[Options], SectionResult]] = {
    "ipc": ipc.run,
    "frames": frames.run,
    "core": core_capacity.run,
    "core-events": core_capacity.ingest,
    "batching": batching.run,
    "events-db": events_db.run,
    "reconcile": reconcile_delay.run,
    "multinode": multinode.run,
}
"""Section name -> runner, in the order they run and print. Add new sections here."""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="shorter runs (about 30 s in all)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="interleaved repeats per measurement (default 5, 3 with --quick)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)})")
    parser.add_argument("--compare-with", metavar="REV", default=None,
                        help="also measure this git revision's Core and daemon, in the same run (core section)")
    parser.add_argument("--output", metavar="DIR", default="bench-output", help="where plots go (default bench-output)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None,
                        help="RUTH_DEVICE for the daemons of the batching section")
    args = parser.parse_args(argv)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    if repeats < 1:
        parser.error("--repeats must be at least 1")
    options = Options(quick=args.quick, repeats=repeats, compare_with=args.compare_with, output_dir=Path(args.output),
                      device=args.device)
    started = time.monotonic()
    rows: list[Row] = []
    notes: list[str] = []
    for name in args.only:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        result = SECTIONS[name](options)
        rows.extend(result.rows)
        notes.extend(result.notes)
    print(f"python -m bench {' '.join(argv)}".rstrip())
    print(f"Python {platform.python_version()}, {platform.machine()}, median of {repeats} interleaved runs; "
          f"ratio = ours / reference\n")
    print(render(rows))
    print()
    for note in notes:
        print(note)
    print(f"total {time.monotonic() - started:.0f} s")
    return 1 if any(row.verdict == "MISS" for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
