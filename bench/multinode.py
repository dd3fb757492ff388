"""Multinode section (``python -m bench --only multinode``, or ``python -m bench.multinode``): placement across hosts.

Three nodes and a PostgreSQL server, each a host of its own on one machine
(``bench.multinode_cluster``). The scenario, which tests/multinode asserts on:

1. Every camera is assigned to its node in the database; each node's Core
   serves exactly its cameras (its metrics), and each node's /dev/shm holds
   exactly its rings.
2. One camera moves from node1 to node2: VAS exports it on node2 too (a writer
   starts there, the old one keeps writing), then the assignment moves. The
   move latency is from just before the commit to the first event on node2,
   and to the last event on node1 (metrics scraped every 0.1 s).
3. events/s per node from the database, over a window, before and after node3
   is killed (SIGKILL to every process on it).
4. Writers stop on the survivors, their sinks drain, and the events in the
   database for their cameras are exactly what their sinks wrote, with no
   duplicates, drops or rejections.

Needs root and iproute2 (skipped otherwise, saying why).
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from ai_model_container.contract.shm_layout import segment_reference
from ruth_ai_core.storage.local_cluster import ClusterUnavailable

from .multinode_cluster import DATABASE_ADDRESS, Deployment, Node, camera_events, scrape, sink_counts, subscribed_cameras
from .netns import NamespacesUnavailable, check_available
from .options import Options
from .table import Row, SectionResult, Target, render

SECTION = "multinode"
SCRAPE_INTERVAL_S = 0.1
SETTLED_S = 1.5
"""A move is over once the old node's count for the camera has not changed for this long."""


@dataclass
class Move:
    camera: str
    source: str
    target: str
    first_new_s: float
    """Commit -> the first scrape where the new node has an event for the camera."""
    last_old_s: float
    """Commit -> the last scrape where the old node's count for the camera grew (0 when it never did)."""
    still_on_source: bool
    """Whether the old node's Core still subscribed to the camera once the move settled."""


@dataclass
class Result:
    assigned: dict[str, set[str]]
    """Node -> its cameras, as assigned before the move."""
    served: dict[str, set[str]]
    """Node -> cameras its Core has written events for (its metrics), before the move."""
    rings: dict[str, set[str]]
    """Host (node, and ``root`` for the machine itself) -> cameras whose ring is in its /dev/shm."""
    sockets: dict[str, set[str]]
    """Host (node, and ``root``) -> what is in the socket directory's path as that host sees it."""
    database_from_root: dict[str, str]
    """Address tried from the root namespace -> the error that refused it (an empty string: it answered)."""
    move: Move
    killed: str
    rates_before: dict[str, float]
    rates_after: dict[str, float]
    expected_rates_after: dict[str, float]
    """Node -> cameras x fps once the move is done."""
    killed_events_after: int
    """Events in the database from the killed node's cameras sent after the kill."""
    survivors_written: float
    survivors_in_database: int
    sink_counts: dict[str, dict[str, float]] = field(default_factory=dict)
    """Survivor -> its event sink's counters once drained."""
    wall_s: float = 0.0


def database_refusals(deployment: Deployment) -> dict[str, str]:
    """Connect to the server from the root namespace, on its loopback and on the server's address."""
    refusals = {}
    for host in ("127.0.0.1", DATABASE_ADDRESS):
        try:
            with psycopg.connect(host=host, port=deployment.port, user="postgres", dbname="postgres", connect_timeout=2):
                refusals[host] = ""
        except psycopg.OperationalError as exc:
            refusals[host] = str(exc).strip().splitlines()[0]
    return refusals


RING_PREFIX = Path(segment_reference("")).name
"""What every ring's file name in /dev/shm starts with; the camera id follows."""


def rings_on(node: Node) -> set[str]:
    listing = node.host.run(["ls", "/dev/shm"]).stdout.split()
    return {name.removeprefix(RING_PREFIX) for name in listing if name.startswith(RING_PREFIX)}


def rings_on_machine(cameras: list[str]) -> set[str]:
    return {camera for camera in cameras if Path(segment_reference(camera)).exists()}


def sockets_on(node: Node) -> set[str]:
    return set(node.host.run(["ls", str(node.host.socket_dir)]).stdout.split())


def measure_move(deployment: Deployment, camera: str, source: Node, target: Node, timeout_s: float = 20.0) -> Move:
    deployment.start_writer(target, [camera])
    with deployment.operator():
        old_count = camera_events(scrape(source.metrics_url)).get(camera)
    committed = deployment.move_camera(camera, target)
    first_new = None
    last_old = committed
    with deployment.operator():
        while time.time() - committed < timeout_s:
            # Each time is taken once its scrape has answered: an upper bound on when the event happened.
            old = camera_events(scrape(source.metrics_url)).get(camera)
            if old is not None and old_count is not None and old > old_count:
                last_old = time.time()
            old_count = old if old is not None else old_count
            if first_new is None and camera_events(scrape(target.metrics_url)).get(camera, 0) > 0:
                first_new = time.time()
            if first_new is not None and time.time() - last_old >= SETTLED_S:
                break
            time.sleep(SCRAPE_INTERVAL_S)
        still_on_source = camera in subscribed_cameras(scrape(source.metrics_url))
    if first_new is None:
        raise RuntimeError(f"{camera} not served on {target.name} {timeout_s}s after its move")
    return Move(camera, source.name, target.name, first_new - committed, last_old - committed, still_on_source)


def node_rates(deployment: Deployment, placement: dict[str, set[str]], window_s: float) -> dict[str, float]:
    """events/s per node over the next ``window_s``, from the database (the sinks flush every 0.2 s)."""
    since = time.time()
    time.sleep(window_s)
    until = time.time()
    time.sleep(1.0)
    counts = deployment.events_per_camera(since, until)
    return {node: sum(counts.get(camera, 0) for camera in cameras) / (until - since) for node, cameras in placement.items()}


def drained_sink(deployment: Deployment, node: Node, timeout_s: float = 15.0) -> dict[str, float]:
    """The node's sink counters once nothing is buffered and the count has not moved for a second."""
    deadline = time.monotonic() + timeout_s
    previous = None
    with deployment.operator():
        while True:
            counts = sink_counts(scrape(node.metrics_url))
            if counts == previous and counts.get("buffered") == 0:
                return counts
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name}: sink not drained: {counts}")
            previous = counts
            time.sleep(1.0)


def run_scenario(log_dir: Path, cameras_per_node: int = 3, fps: float = 5.0, window_s: float = 4.0) -> Result:
    started = time.monotonic()
    deployment = Deployment(log_dir, nodes=3, cameras_per_node=cameras_per_node, fps=fps)
    try:
        refusals = database_refusals(deployment)
        deployment.assign_all()
        for node in deployment.nodes:
            deployment.start_node(node)
        for node in deployment.nodes:
            deployment.wait_serving(node, node.cameras)
        first, second, third = deployment.nodes
        every_camera = [camera for node in deployment.nodes for camera in node.cameras]
        assigned = {node.name: set(node.cameras) for node in deployment.nodes}
        with deployment.operator():
            served = {node.name: set(camera_events(scrape(node.metrics_url))) for node in deployment.nodes}
        rings = {node.name: rings_on(node) for node in deployment.nodes}
        rings["root"] = rings_on_machine(every_camera)
        sockets = {node.name: sockets_on(node) for node in deployment.nodes}
        sockets["root"] = set(os.listdir(deployment.socket_dir))

        moved = first.cameras[0]
        move = measure_move(deployment, moved, first, second)
        placement = {first.name: set(first.cameras) - {moved}, second.name: set(second.cameras) | {moved},
                     third.name: set(third.cameras)}
        before = node_rates(deployment, placement, window_s)
        killed_at = time.time()
        third.host.kill()
        survivors = {first.name: placement[first.name], second.name: placement[second.name]}
        after = node_rates(deployment, survivors, window_s)
        killed_events_after = sum(deployment.events_per_camera(killed_at, time.time() + 60).get(camera, 0)
                                  for camera in third.cameras)

        for node in (first, second):
            for writer in set(node.writers.values()):
                node.host.stop(writer)
        sinks = {node.name: drained_sink(deployment, node) for node in (first, second)}
        in_database = deployment.events_per_camera(0, time.time() + 60)
        return Result(assigned=assigned, served=served, rings=rings, sockets=sockets, database_from_root=refusals, move=move,
                      killed=third.name, rates_before=before, rates_after=after,
                      expected_rates_after={name: len(cameras) * fps for name, cameras in survivors.items()},
                      killed_events_after=killed_events_after,
                      survivors_written=sum(counts["written"] for counts in sinks.values()),
                      survivors_in_database=sum(in_database.get(camera, 0) for camera in first.cameras + second.cameras),
                      sink_counts=sinks, wall_s=time.monotonic() - started)
    finally:
        deployment.destroy()


def rows(result: Result) -> list[Row]:
    table = []
    for node, before in result.rates_before.items():
        after = result.rates_after.get(node, 0.0)
        table.append(Row(SECTION, f"{node} events/s after {result.killed} is killed", "1/s", after, before,
                         "before the kill", Target("higher", 1.25) if node != result.killed else None))
    table.append(Row(SECTION, f"camera move {result.move.source} -> {result.move.target}: first event on new node",
                     "ms", result.move.first_new_s * 1000))
    table.append(Row(SECTION, "camera move: last event on old node after the commit (0: none)", "ms",
                     result.move.last_old_s * 1000))
    return table


def run(options: Options) -> SectionResult:
    try:
        check_available()
    except NamespacesUnavailable as exc:
        return SectionResult([], [f"{SECTION}: skipped: {exc}"])
    log_dir = Path(tempfile.mkdtemp(prefix="bmn-", dir="/tmp"))
    try:
        result = run_scenario(log_dir, window_s=options.scaled(8.0, 4.0))
    except ClusterUnavailable as exc:
        return SectionResult([], [f"{SECTION}: skipped: {exc}"])
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)
    notes = [f"{SECTION}: 3 nodes x 3 cameras at 5 fps, metrics scraped every {SCRAPE_INTERVAL_S * 1000:.0f} ms "
             f"(the move latencies' resolution); survivors wrote {result.survivors_written:.0f} events, the database "
             f"holds {result.survivors_in_database} of theirs; {result.wall_s:.0f} s"]
    return SectionResult(rows(result), notes)


def main() -> int:
    section = run(Options(quick="--quick" in sys.argv[1:]))
    print(render(section.rows))
    for note in section.notes:
        print(note)
    return 1 if any(row.verdict == "MISS" for row in section.rows) else 0


if __name__ == "__main__":
    sys.exit(main())
