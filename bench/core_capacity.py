"""Core capacity section: how many cameras x 10 fps one Ruth AI Core sustains on this machine.

N cameras of tiny frames (``bench.fleet_writer``: slot records and headers
only, no pixels) at 10 fps, every camera assigned to the benchmark's no-op
model, so only Core, the wire and the daemon's bookkeeping cost anything. Two
phase modes: cameras ``staggered`` over the period, and cameras ``in-step``
(every camera ticks at the same instant, the way VAS paces cameras of one
rate). Core (``ruth-ai run``), the daemon and the writer are separate
processes, as deployed.

Per level, after a warm-up, over a measured window: frames answered per
second against the target, drops by reason, Core CPU per selected frame,
daemon CPU per answered request, Core RSS, and whether every selected frame
is accounted for (results + errors + drops + queued + in flight) at the
window's end.

``--compare-with REF`` runs the same levels, in the same run, on the Core and
daemon of another git revision (checked out into a temporary worktree), so
the table holds both. The section also writes a plot (PNG) of answered rate
and CPU per frame against cameras.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional

import yaml

from .core_metrics import scrape_core
from .options import Options
from .procs import REPO_ROOT, cpu_seconds, rss_bytes
from .table import Row, SectionResult, Target

SECTION = "core"
PHASES = ("staggered", "in-step")
GOAL_CAMERAS = 500
GOAL_ANSWERED = 0.95
GOAL_CPU_US = 150.0
CAMERA_FPS = 10.0
WARM_UP_S = 4.0
STARTUP_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class Stack:
    """One revision's Core and daemon, and how to start them."""

    name: str
    root: Path
    """Where its packages are imported from (the working tree, or a worktree of an older revision)."""
    daemon_module: str
    noop_model: Path
    extra_core_args: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        if self.root == REPO_ROOT:
            return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        return {**os.environ, "PYTHONPATH": f"{self.root}:{REPO_ROOT}"}


@dataclass
class Level:
    stack: str
    cameras: int
    phase: str
    target_per_s: float
    answered_per_s: float
    drops: dict[str, float] = field(default_factory=dict)
    core_cpu_us_per_frame: float = 0.0
    daemon_cpu_us_per_request: float = 0.0
    core_rss_mb: float = 0.0
    accounted: bool = False
    stored_per_s: float = 0.0
    """Events the database sink stored per second (0 with the JSON Lines sink)."""
    database_cpu_us_per_event: float = 0.0

    @property
    def answered_share(self) -> float:
        return self.answered_per_s / self.target_per_s


def current_stack() -> Stack:
    return Stack("this tree", REPO_ROOT, "ai_model_container.daemon.cli", REPO_ROOT / "bench" / "noop_model")


@contextmanager
def stack_at(revision: str) -> Iterator[Stack]:
    """The Core and daemon of ``revision``, from a temporary git worktree removed afterwards."""
    directory = Path(tempfile.mkdtemp(prefix="bench-rev-"))
    tree = directory / "tree"
    subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(tree), revision], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        flat = (tree / "ai_model_container" / "cli.py").exists()  # before the split into packages/
        if flat:
            yield Stack(revision, tree, "ai_model_container.cli", tree / "bench" / "noop_model")
        else:
            packages = tree / "packages"
            root = Path(f"{packages / 'ruth-ai-model-runtime'}:{packages / 'ruth-ai-core'}")
            yield Stack(revision, root, "ai_model_container.daemon.cli", tree / "bench" / "noop_model")
    finally:
        subprocess.run(["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(tree)],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(directory, ignore_errors=True)


Progress = tuple[float, Callable[[float, int, float], None]]
"""(every how many seconds, called with (elapsed s, Core's pid, answered share so far))."""


def measure(stack: Stack, cameras: int, phase: str, seconds: float, on_progress: Optional[Progress] = None,
            database: Optional[str] = None, database_cpu: Optional[Callable[[], float]] = None) -> Level:
    """One level: start daemon, Core and writer, warm up, measure a window, stop everything.

    ``database``: a PostgreSQL URL for the registry and the events (``--event-sink database``) instead of a
    SQLite file and JSON Lines to /dev/null; ``database_cpu`` then reads its server's CPU seconds.
    """
    tag = uuid.uuid4().hex[:6]
    workdir = Path(tempfile.mkdtemp(prefix="bcap-", dir="/tmp"))
    model_id = f"noop_{tag}"
    processes: list[subprocess.Popen] = []
    try:
        daemon = _start(processes, [sys.executable, "-m", stack.daemon_module, "serve", str(stack.noop_model),
                                    "--socket-dir", str(workdir), "--model-id", model_id], stack, workdir / "daemon.log")
        _wait_for_socket(workdir / f"vas_model_{model_id}.sock", daemon)
        storage = ["--database", database] if database else ["--registry", str(workdir / "registry.sqlite3")]
        sink = ["--event-sink", "database"] if database else ["--events", os.devnull]
        subprocess.run([sys.executable, "-m", "ruth_ai_core.cli", "models", "import", "--from-daemon", model_id,
                        *storage, "--socket-dir", str(workdir)], env=stack.env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        prefix = f"bc{tag}"
        assignments = workdir / "assignments.yaml"
        assignments.write_text(yaml.safe_dump({"assignments": [
            {"camera": f"{prefix}_{index}", "model": model_id, "fps": CAMERA_FPS} for index in range(cameras)]}))
        _start(processes, [sys.executable, "-m", "bench.fleet_writer", "--prefix", prefix, "--cameras", str(cameras),
                           "--fps", str(CAMERA_FPS), "--phase", phase], current_stack(), workdir / "writer.log")
        port = _free_port()
        url = f"http://127.0.0.1:{port}/metrics"
        core = _start(processes, [sys.executable, "-m", "ruth_ai_core.cli", "run", "--assignments", str(assignments),
                                  *storage, *sink, "--socket-dir", str(workdir), "--metrics-port", str(port),
                                  *stack.extra_core_args], stack, workdir / "core.log")
        _wait_for_results(url, core, cameras)
        time.sleep(WARM_UP_S)
        first, core_cpu, daemon_cpu, started = scrape_core(url), cpu_seconds(core.pid), cpu_seconds(daemon.pid), time.monotonic()
        db_cpu = database_cpu() if database_cpu else 0.0
        if on_progress is None:
            time.sleep(seconds)
        else:
            every, report = on_progress
            while (elapsed := time.monotonic() - started) < seconds:
                now = scrape_core(url)
                report(elapsed, core.pid, (now.answered - first.answered) / max(elapsed, 1e-9) / (cameras * CAMERA_FPS))
                time.sleep(min(every, max(0.0, seconds - elapsed)))
        last, ended = scrape_core(url), time.monotonic()
        core_cpu, daemon_cpu = cpu_seconds(core.pid) - core_cpu, cpu_seconds(daemon.pid) - daemon_cpu
        db_cpu = database_cpu() - db_cpu if database_cpu else 0.0
        rss = rss_bytes(core.pid)
    finally:
        for process in reversed(processes):
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
    window = ended - started
    answered = last.answered - first.answered
    selected = last.selected - first.selected
    return Level(
        stack=stack.name, cameras=cameras, phase=phase, target_per_s=cameras * CAMERA_FPS,
        answered_per_s=answered / window,
        drops={reason: (count - first.drops.get(reason, 0)) / window for reason, count in last.drops.items()
               if count - first.drops.get(reason, 0) > 0},
        core_cpu_us_per_frame=core_cpu / selected * 1e6 if selected else float("nan"),
        daemon_cpu_us_per_request=daemon_cpu / answered * 1e6 if answered else float("nan"),
        core_rss_mb=rss / 2 ** 20,
        accounted=last.accounted,
        stored_per_s=(last.stored - first.stored) / window,
        database_cpu_us_per_event=db_cpu / (last.stored - first.stored) * 1e6 if last.stored > first.stored else 0.0,
    )


def _start(processes: list[subprocess.Popen], command: list[str], stack: Stack, log: Path) -> subprocess.Popen:
    with log.open("wb") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=stack.env, cwd=REPO_ROOT)
    processes.append(process)
    return process


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_for_socket(path: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while not path.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the daemon did not start ({path})")
        time.sleep(0.05)


def _wait_for_results(url: str, core: subprocess.Popen, cameras: int) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        try:
            if scrape_core(url).answered >= cameras:
                return
        except OSError:
            pass
        if core.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the core did not start answering")
        time.sleep(0.2)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def table(levels: list[Level]) -> list[str]:
    lines = ["| stack | cameras x 10 fps | phases | target/s | answered/s | answered | drops/s by reason "
             "| Core CPU per frame | daemon CPU per request | Core RSS | accounted |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for level in levels:
        drops = ", ".join(f"{reason} {rate:,.0f}" for reason, rate in sorted(level.drops.items())) or "-"
        lines.append(f"| {level.stack} | {level.cameras} | {level.phase} | {level.target_per_s:,.0f} "
                     f"| {level.answered_per_s:,.0f} | {level.answered_share:.0%} | {drops} "
                     f"| {level.core_cpu_us_per_frame:,.0f} us | {level.daemon_cpu_us_per_request:,.0f} us "
                     f"| {level.core_rss_mb:.0f} MB | {'yes' if level.accounted else 'NO'} |")
    return lines


def plot(levels: list[Level], path: Path) -> Optional[Path]:
    """Answered share and Core CPU per frame against cameras, one line per stack and phase mode."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    figure, (answered, cpu) = plt.subplots(1, 2, figsize=(11, 4.2))
    for key in sorted({(level.stack, level.phase) for level in levels}):
        mine = sorted((level for level in levels if (level.stack, level.phase) == key), key=lambda lv: lv.cameras)
        label = f"{key[0]}, {key[1]}"
        answered.plot([lv.cameras for lv in mine], [100 * lv.answered_share for lv in mine], marker="o", label=label)
        cpu.plot([lv.cameras for lv in mine], [lv.core_cpu_us_per_frame for lv in mine], marker="o", label=label)
    answered.axhline(95, color="grey", linestyle=":", linewidth=1)
    answered.set(xlabel="cameras x 10 fps", ylabel="frames answered (% of target)", ylim=(0, 105), xscale="log")
    cpu.axhline(150, color="grey", linestyle=":", linewidth=1)
    cpu.set(xlabel="cameras x 10 fps", ylabel="Ruth AI Core CPU per frame (us)", xscale="log", yscale="log")
    for axes in (answered, cpu):
        axes.grid(True, alpha=0.3)
        axes.legend(fontsize=8)
    figure.suptitle("Ruth AI Core capacity, no-op model, tiny frames, 2-core machine")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def run(options: Options) -> SectionResult:
    """The capacity table for this tree (and ``--compare-with``'s revision), the goal rows, the plot."""
    counts = (32, 500) if options.quick else (32, 100, 250, 500, 1000)
    seconds = options.scaled(10.0, 5.0)
    stacks = [current_stack()]
    levels: list[Level] = []
    with contextlib.ExitStack() as stack:
        if options.compare_with:
            stacks.append(stack.enter_context(stack_at(options.compare_with)))
        for cameras in counts:
            for phase in PHASES:
                for candidate in stacks:
                    print(f"  core capacity: {candidate.name}, {cameras} cameras, {phase}", file=sys.stderr, flush=True)
                    levels.append(measure(candidate, cameras, phase, seconds))
    rows = []
    for level in levels:
        if level.stack == stacks[0].name and level.cameras == GOAL_CAMERAS:
            rows.append(Row(SECTION, f"answered, {level.cameras} cameras {level.phase}", "%",
                            100 * level.answered_share, 100 * GOAL_ANSWERED, "goal", Target("higher")))
            rows.append(Row(SECTION, f"Core CPU per frame, {level.cameras} cameras {level.phase}", "us",
                            level.core_cpu_us_per_frame, GOAL_CPU_US, "goal", Target("lower")))
    notes = ["core capacity (no-op model, 64x48 frames, 10 fps per camera):", *table(levels)]
    picture = plot(levels, options.output_dir / "core_capacity.png")
    if picture is not None:
        notes.append(f"core capacity plot: {picture}")
    if any(not level.accounted for level in levels):
        notes.append("core capacity: SOME LEVELS DID NOT ACCOUNT FOR EVERY SELECTED FRAME (accounted = NO)")
    return SectionResult(rows, notes)


def ingest(options: Options) -> SectionResult:
    """500 cameras x 10 fps with events into PostgreSQL, beside the same level with JSON Lines, in one run."""
    from ruth_ai_core.storage.local_cluster import ClusterUnavailable, LocalCluster

    seconds = options.scaled(10.0, 5.0)
    try:
        cluster = LocalCluster().init().start()
    except ClusterUnavailable as exc:
        return SectionResult([], [f"core-events: skipped, {exc}"])
    try:
        url = cluster.create_database("bench_core_events")
        subprocess.run([sys.executable, "-m", "ruth_ai_core.cli", "db", "upgrade", "--database", url], check=True,
                       env=current_stack().env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stack = current_stack()
        jsonl = measure(stack, GOAL_CAMERAS, "in-step", seconds)
        stored = measure(stack, GOAL_CAMERAS, "in-step", seconds, database=url, database_cpu=cluster.cpu_seconds)
    finally:
        cluster.destroy()
    added = stored.core_cpu_us_per_frame - jsonl.core_cpu_us_per_frame
    rows = [
        Row("core-events", f"events stored per second, {GOAL_CAMERAS} cameras in step", "events/s",
            stored.stored_per_s, stored.answered_per_s, "answered", Target("higher", 1.05)),
        Row("core-events", "PostgreSQL server CPU per event", "us", stored.database_cpu_us_per_event),
        Row("core-events", "Core CPU per frame, database sink", "us", stored.core_cpu_us_per_frame,
            jsonl.core_cpu_us_per_frame, "JSON Lines sink"),
        Row("core-events", "Core CPU added per event by the database sink", "us", added),
    ]
    return SectionResult(rows, ["core-events (JSON Lines to /dev/null, then PostgreSQL):", *table([jsonl, stored])])


def soak(cameras: int, phase: str, minutes: float, every_s: float = 30.0) -> int:
    """One level held for ``minutes``: Core's RSS, fds and answered share every ``every_s`` seconds."""
    stack = current_stack()
    print(f"soak: {cameras} cameras x {CAMERA_FPS:g} fps, {phase}, {minutes:g} min", flush=True)
    rss: list[float] = []

    def report(elapsed: float, core_pid: int, share: float) -> None:
        rss.append(rss_bytes(core_pid) / 2 ** 20)
        fds = len(os.listdir(f"/proc/{core_pid}/fd"))
        print(f"  {elapsed:6.0f} s  Core RSS {rss[-1]:6.1f} MB  fds {fds:4d}  answered {share:.1%}", flush=True)

    level = measure(stack, cameras, phase, minutes * 60, on_progress=(every_s, report))
    growth = rss[-1] - rss[0] if rss else 0.0
    print("\n".join(table([level])))
    print(f"soak: Core RSS {rss[0]:.1f} -> {rss[-1]:.1f} MB ({growth:+.1f} MB) over {minutes:g} min")
    return 0 if level.accounted else 1


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.core_capacity",
                                     description="Hold one Core capacity level for a while (RSS over time).")
    parser.add_argument("--cameras", type=int, default=GOAL_CAMERAS)
    parser.add_argument("--phase", choices=PHASES, default="in-step")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between lines")
    args = parser.parse_args(argv)
    return soak(args.cameras, args.phase, args.minutes, args.every)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
