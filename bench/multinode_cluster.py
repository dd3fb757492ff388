"""Three Ruth AI nodes and one PostgreSQL server on one machine, each a host of its own (``bench.netns``).

The switch namespace holds the bridge and the operator's address: whatever the
harness does to the database or a node's metrics it does from there
(``Deployment.operator``), over the veth network like any other host. The
database namespace runs a throwaway PostgreSQL server (``LocalCluster``)
listening only on its veth address, with no Unix socket. Each node runs what a
real edge host runs: a VAS stand-in writing its cameras' rings
(``bench.fleet_writer``), the no-op model daemon (``ruth-model serve`` on its
socket directory, private to the node), and ``ruth-ai run --node
NAME --event-sink database`` with its metrics on the node's address.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import psycopg
import sqlalchemy as sa
from prometheus_client.parser import text_string_to_metric_families

from ai_model_container.contract.shm_layout import segment_reference
from ruth_ai_core.assignments import Assignment
from ruth_ai_core.metrics import DEFAULT_METRICS_PORT
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.storage import schema as t
from ruth_ai_core.storage.assignment_store import AssignmentStore
from ruth_ai_core.storage.database import Database
from ruth_ai_core.storage.local_cluster import LocalCluster

from .netns import Host, Switch, entered
from .procs import NOOP_MODEL_DIR, REPO_ROOT

SUBNET = "10.77.0"
SWITCH_ADDRESS = f"{SUBNET}.254"
DATABASE_ADDRESS = f"{SUBNET}.10"
MODEL_ID = "bench_noop"
WRITER_FPS = 10.0
"""Rings advance at twice the assignments' rate, so every frame the FPS gate wants is there."""
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass
class Node:
    name: str
    address: str
    host: Host
    cameras: list[str]
    writers: dict[str, subprocess.Popen] = field(default_factory=dict)
    """Camera -> the writer process whose rings include it."""
    core: subprocess.Popen | None = None

    @property
    def metrics_url(self) -> str:
        return f"http://{self.address}:{DEFAULT_METRICS_PORT}/metrics"


def scrape(url: str, timeout_s: float = 2.0) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """One Prometheus scrape: (sample name, sorted labels) -> value. Call it inside ``Deployment.operator``."""
    with _NO_PROXY.open(url, timeout=timeout_s) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def camera_events(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """Events (results and errors) a Core has written per camera, from its scrape."""
    totals: dict[str, float] = {}
    for (name, labels), value in metrics.items():
        if name == "ruth_ai_events_total":
            camera = dict(labels)["camera"]
            totals[camera] = totals.get(camera, 0.0) + value
    return totals


def subscribed_cameras(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> set[str]:
    """Cameras a Core has a live subscription for (retired pairs keep their counters, not their target FPS)."""
    return {dict(labels)["camera"] for (name, labels) in metrics if name == "ruth_ai_subscription_target_fps"}


def sink_counts(metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[str, float]:
    """The event sink's counters and gauges from a scrape: written, duplicates, dropped, buffered, ..."""
    prefix = "ruth_ai_event_sink_"
    return {name[len(prefix):].removesuffix("_total"): value for (name, _), value in metrics.items()
            if name.startswith(prefix) and not name.endswith("_created")}


class Deployment:
    """The switch, the database host and the nodes; ``destroy`` takes every part down, whatever state it is in."""

    def __init__(self, log_dir: Path, nodes: int = 3, cameras_per_node: int = 3, fps: float = 5.0) -> None:
        self.tag = f"rm{uuid.uuid4().hex[:5]}"
        self.log_dir = log_dir
        self.fps = fps
        self.nodes: list[Node] = []
        self.cluster: LocalCluster | None = None
        self.switch = Switch(self.tag, SWITCH_ADDRESS)
        # One short path (AF_UNIX allows 107 bytes) that every node mounts its own tmpfs on.
        self.socket_dir = Path(tempfile.mkdtemp(prefix=f"ruth-{self.tag}-", dir="/tmp"))
        try:
            self._start_database()
            for index in range(1, nodes + 1):
                address = f"{SUBNET}.{index}"
                host = Host(f"node{index}", self.switch.attach(f"n{index}", address), log_dir, self.socket_dir)
                cameras = [f"{self.tag}_n{index}_c{camera}" for camera in range(cameras_per_node)]
                self.nodes.append(Node(f"node{index}", address, host, cameras))
        except BaseException:
            self.destroy()
            raise

    # -- the database host --------------------------------------------------------------

    def _start_database(self) -> None:
        namespace = self.switch.attach("db", DATABASE_ADDRESS)
        # tcp=True picks a port free on this machine's loopback, so "not reachable there" means something; the
        # server listens on the veth address only, with no Unix socket. Its dynamic shared memory goes to files in
        # its data directory, not the machine's /dev/shm, so even an immediate stop leaves nothing there.
        self.cluster = LocalCluster(tcp=True, settings={"listen_addresses": DATABASE_ADDRESS, "unix_socket_directories": "",
                                                        "dynamic_shared_memory_type": "mmap"})
        self.port = self.cluster.port
        self.cluster.init()
        with (self.cluster.data_dir / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {SUBNET}.0/24 trust\n")
        with entered(namespace):  # the server and its backends live in the database's namespace
            self.cluster.start()
        with self.operator():
            with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
                conn.execute("CREATE DATABASE ruth_ai")
            with Database.open(self.url, upgrade=True) as db:
                ModelRegistry(db).import_model_yaml(NOOP_MODEL_DIR / "model.yaml")

    def conninfo(self, database: str = "ruth_ai") -> str:
        return f"host={DATABASE_ADDRESS} port={self.port} user=postgres dbname={database} connect_timeout=3"

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{DATABASE_ADDRESS}:{self.port}/ruth_ai"

    @contextlib.contextmanager
    def operator(self) -> Iterator[None]:
        """This thread on the switch, where the database and every node's metrics are reachable."""
        with entered(self.switch.name):
            yield

    # -- the nodes ----------------------------------------------------------------------

    def assign_all(self) -> None:
        """Every node's cameras to the no-op model at ``fps``, placed on that node (the store the CLI uses)."""
        with self.operator(), Database.open(self.url) as db:
            store = AssignmentStore(db)
            for node in self.nodes:
                for camera in node.cameras:
                    store.put(Assignment(camera=camera, model=MODEL_ID, fps=self.fps), node=node.name)

    def move_camera(self, camera: str, node: Node) -> float:
        """Place ``camera`` on ``node`` in the database; returns the wall time just before the commit."""
        with self.operator(), Database.open(self.url) as db:
            store = AssignmentStore(db)
            committed_before = time.time()
            store.move_camera(camera, node.name)
        return committed_before

    def start_writer(self, node: Node, cameras: list[str], timeout_s: float = 15.0) -> None:
        """Export ``cameras`` on ``node`` (as VAS would) and wait until their rings are in the node's /dev/shm."""
        process = node.host.start(f"writer{len(node.writers)}", _python("bench.fleet_writer", "--fps", str(WRITER_FPS),
                                                                         *[a for c in cameras for a in ("--camera", c)]),
                                  _env())
        node.writers.update({camera: process for camera in cameras})
        paths = [segment_reference(camera) for camera in cameras]
        deadline = time.monotonic() + timeout_s
        while node.host.run(["ls", *paths]).returncode != 0:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{node.name}: writer not up:\n{node.host.log('writer0')}")
            time.sleep(0.05)

    def start_node(self, node: Node) -> None:
        """The node's writer, model daemon and Core (not waiting for the Core to serve: see ``wait_serving``)."""
        self.start_writer(node, node.cameras)
        node.host.start("daemon", _python("ai_model_container.daemon.cli", "serve", str(NOOP_MODEL_DIR),
                                          "--model-id", MODEL_ID), _env())
        node.core = node.host.start("core", _python("ruth_ai_core.cli", "run", "--node", node.name, "--database", self.url,
                                                    "--event-sink", "database", "--metrics-addr", node.address,
                                                    "--metrics-port", str(DEFAULT_METRICS_PORT)), _env())

    def wait_serving(self, node: Node, cameras: list[str], timeout_s: float = 45.0) -> None:
        """Until the node's Core has written an event for each of ``cameras``."""
        deadline = time.monotonic() + timeout_s
        with self.operator():
            while True:
                with contextlib.suppress(OSError):
                    served = camera_events(scrape(node.metrics_url))
                    if all(served.get(camera, 0) > 0 for camera in cameras):
                        return
                if node.core is not None and node.core.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{node.name} does not serve {cameras}:\n{node.host.log('core')[-3000:]}")
                time.sleep(0.2)

    def events_per_camera(self, since: float, until: float) -> dict[str, int]:
        """Events in the database per camera whose ``sent_at`` is in [since, until)."""
        query = (sa.select(t.events.c.camera_id, sa.func.count())
                 .where(t.events.c.sent_at >= since, t.events.c.sent_at < until).group_by(t.events.c.camera_id))
        with self.operator(), Database.open(self.url) as db, db.engine.connect() as conn:
            return {camera: int(count) for camera, count in conn.execute(query)}

    # -- teardown -----------------------------------------------------------------------

    def destroy(self) -> None:
        for node in self.nodes:
            node.host.kill()
        if self.cluster is not None:
            self.cluster.destroy()
        self.switch.destroy()
        shutil.rmtree(self.socket_dir, ignore_errors=True)


def _python(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
