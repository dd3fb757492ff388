"""``ruth-ai``: run Ruth AI Core, look at it, and manage the model registry.

A first session, with a model daemon and a camera already running:

    ruth-ai models import --from-daemon example
    echo 'assignments: [{camera: cam1, model: example, fps: 5}]' > assignments.yaml
    ruth-ai run --assignments assignments.yaml --events events.jsonl &
    ruth-ai status

With a shared database instead of local files (see cli_db.py for the rest):

    ruth-ai db upgrade --database postgresql://ruth@/ruth_ai?host=/run/postgresql
    ruth-ai assign cam1 example --fps 5 --node edge-1 --database ...
    ruth-ai run --node edge-1 --event-sink database --database ...
"""

from __future__ import annotations

import gc
import json
import logging
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Optional

import click

from ai_model_container.contract.client import ClientError
from ai_model_container.contract.model_config import ModelConfigError
from ai_model_container.contract.paths import SOCKET_DIR_ENV, socket_path
from ai_model_container.contract.peer import allowed_uids

from . import __version__
from .assignments import AssignmentError, load_assignments
from .cameras import DEFAULT_POLL_INTERVAL_S
from .cli_db import EXIT_CONFIG, EXIT_UNAVAILABLE, StorageAwareGroup, database_options, open_database, register
from .core import Core
from .events import EventSink, JsonLinesSink
from .metrics import DEFAULT_METRICS_ADDR, DEFAULT_METRICS_PORT, EventSinkCollector
from .reconcile import DEFAULT_WATCH_INTERVAL_S, AssignmentSource, Reconciler, YamlAssignments, check_assignments
from .registry import ModelRegistry, RegistryError
from .router import DEFAULT_HEALTH_INTERVAL_S, DEFAULT_REQUEST_TIMEOUT_S, RouteSettings
from .routing import RoutingError, load_routing
from .status import StatusUnavailable, render, scrape
from .storage.assignment_store import AssignmentStore, NodeAssignments, check_node
from .storage.changes import listen_for_changes
from .storage.errors import AssignmentConflict
from .storage.event_sink import DEFAULT_BATCH_SIZE, DEFAULT_CAPACITY, DatabaseEventSink
from .storage.url import resolve_database

logger = logging.getLogger("ruth-ai")



def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _open_registry(database: Optional[str], registry_path: Optional[Path]) -> ModelRegistry:
    """The registry on the command's database (storage failures end the command: see StorageAwareGroup)."""
    try:
        return ModelRegistry(resolve_database(database, registry_path))
    except OSError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(cls=StorageAwareGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ruth-ai")
def main() -> None:
    """Ruth AI Core: feed camera frames to model daemons at each subscription's FPS, and manage models."""


@main.command()
@click.option("--assignments", "assignments_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML of camera -> model assignments; watched for changes (single host).")
@click.option("--node", default=None, help="Run the assignments of this node from the database instead "
              "(reacting to changes: NOTIFY on PostgreSQL, polling on SQLite).")
@database_options
@click.option("--routing", "routing_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML pointing models at other sockets (default: <socket dir>/vas_model_<id>.sock).")
@click.option("--event-sink", type=click.Choice(["jsonl", "database"]), default="jsonl", show_default=True,
              help="Where result events go: the JSON Lines file (--events), or the database's events table.")
@click.option("--events", default="events.jsonl", show_default=True, help="JSON Lines file for result events; '-' for stdout.")
@click.option("--events-buffer", default=DEFAULT_CAPACITY, show_default=True,
              help="Database sink: events held while the database is slow or down; beyond that, dropped and counted.")
@click.option("--events-batch", default=DEFAULT_BATCH_SIZE, show_default=True, help="Database sink: events per insert.")
@click.option("--socket-dir", envvar=SOCKET_DIR_ENV, default=None, metavar="DIR", help="Model socket directory.")
@click.option("--metrics-addr", default=DEFAULT_METRICS_ADDR, show_default=True)
@click.option("--metrics-port", default=DEFAULT_METRICS_PORT, show_default=True, help="0 picks a free port.")
@click.option("--connections", type=int, default=None,
              help="Connections per model (default: the daemon's worker count, at most 4).")
@click.option("--max-in-flight", type=int, default=None,
              help="Requests out at once per model (default: sized from the daemon's describe op).")
@click.option("--request-timeout", default=DEFAULT_REQUEST_TIMEOUT_S, show_default=True, help="Seconds per inference.")
@click.option("--health-interval", default=DEFAULT_HEALTH_INTERVAL_S, show_default=True, help="Seconds between health probes.")
@click.option("--poll-ms", default=DEFAULT_POLL_INTERVAL_S * 1000, show_default=True, help="How often agents look for a new frame.")
@click.option("--watch-interval", default=DEFAULT_WATCH_INTERVAL_S, show_default=True, help="Seconds between checks for changed files.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds (default: until SIGTERM/Ctrl-C).")
@click.option("-v", "--verbose", is_flag=True)
def run(assignments_path: Optional[Path], node: Optional[str], database: Optional[str], registry_path: Optional[Path],
        routing_path: Optional[Path], event_sink: str, events: str, events_buffer: int, events_batch: int,
        socket_dir: Optional[str], metrics_addr: str, metrics_port: int, connections: Optional[int],
        max_in_flight: Optional[int], request_timeout: float,
        health_interval: float, poll_ms: float, watch_interval: float, duration: Optional[float], verbose: bool) -> None:
    """Run the core until SIGTERM or Ctrl-C; SIGHUP re-reads the assignments now."""
    configure_logging(verbose)
    if (assignments_path is None) == (node is None):
        raise click.UsageError("give --assignments FILE (single host) or --node NAME (assignments in the database)")
    try:
        if assignments_path is not None:
            load_assignments(assignments_path)
        else:
            check_node(node or "")
        routing = load_routing(routing_path)
        daemon_uids = allowed_uids()
    except (AssignmentError, RoutingError, AssignmentConflict, ValueError) as exc:  # ValueError: bad RUTH_DAEMON_UIDS
        logger.error("cannot start: %s", exc)
        sys.exit(EXIT_CONFIG)
    db = open_database(database, registry_path)
    registry = ModelRegistry(db)
    source: AssignmentSource = (YamlAssignments(assignments_path) if assignments_path is not None
                                else NodeAssignments(AssignmentStore(db), node or ""))
    sink: EventSink = (JsonLinesSink(events) if event_sink == "jsonl"
                       else DatabaseEventSink(db, capacity=events_buffer, batch_size=events_batch))
    settings = RouteSettings(connections=connections, max_in_flight=max_in_flight, request_timeout_s=request_timeout,
                             health_interval_s=health_interval, daemon_uids=daemon_uids)
    core = Core(sink, routing, settings, socket_dir, poll_interval_s=poll_ms / 1000.0)
    core.metrics.registry.register(EventSinkCollector(sink))
    try:
        server = core.metrics.serve(metrics_addr, metrics_port)
    except OSError as exc:
        logger.error("cannot serve metrics on %s:%d: %s", metrics_addr, metrics_port, exc)
        core.stop()
        sink.close()
        db.close()
        sys.exit(EXIT_CONFIG)
    logger.info("metrics at %s; assignments from %s; events to %s", server.url, source.describe(),
                getattr(sink, "target", events))
    reconciler = Reconciler(core, source, registry, routing_path)
    listener = listen_for_changes(db, reconciler.request)  # PostgreSQL: react to NOTIFY at once
    stop = threading.Event()

    def request_stop(*_: object) -> None:
        stop.set()
        reconciler.wake()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, lambda *_: reconciler.request())
    if duration is not None:
        timer = threading.Timer(duration, request_stop)
        timer.daemon = True
        timer.start()
    try:
        reconciler.reconcile()
        # Everything made so far lives as long as the process: keep it out of the collector's scans, whose
        # pauses stop every camera at once (a full collection took up to 59 ms at 500 cameras without this).
        gc.freeze()
        reconciler.watch(stop, watch_interval)
    finally:
        if listener is not None:
            listener.stop()
        totals = core.stop()
        server.close()
        sink.close()
        db.close()
    logger.info("stopped: selected=%d results=%d errors=%d dropped=%s in_flight=%d", totals.selected, totals.results,
                totals.errors, json.dumps(totals.dropped, sort_keys=True), totals.in_flight)
    if isinstance(sink, DatabaseEventSink):
        logger.info("event sink: %s", " ".join(f"{k}={v}" for k, v in sink.counts().items()))


@main.command()
@click.option("--metrics-url", default=f"http://{DEFAULT_METRICS_ADDR}:{DEFAULT_METRICS_PORT}/metrics", show_default=True)
@click.option("--interval", default=1.0, show_default=True, help="Seconds between the two scrapes that give rates; 0 for totals only.")
def status(metrics_url: str, interval: float) -> None:
    """Print subscriptions (FPS achieved, latency, skips) and model health of a running core; exits 3 if none answers."""
    try:
        first = scrape(metrics_url)
        if interval > 0:
            time.sleep(interval)
            click.echo(render(scrape(metrics_url), first))
        else:
            click.echo(render(first))
    except StatusUnavailable as exc:
        click.echo(f"{exc}\nIs `ruth-ai run` running with this --metrics-port?", err=True)
        sys.exit(EXIT_UNAVAILABLE)


@main.command()
@click.argument("assignments_path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@database_options
def check(assignments_path: Path, database: Optional[str], registry_path: Optional[Path]) -> None:
    """Validate an assignments file against the registry; exits 2 if any assignment is rejected."""
    try:
        assignments = load_assignments(assignments_path).assignments
    except AssignmentError as exc:
        click.echo(f"INVALID {exc}", err=True)
        sys.exit(EXIT_CONFIG)
    with _open_registry(database, registry_path) as registry:
        accepted, rejected = check_assignments(assignments, registry)
    for assignment in accepted:
        click.echo(f"OK       {assignment.camera} -> {assignment.model} at {assignment.fps:g} fps")
    for assignment, reason in rejected:
        click.echo(f"REJECTED {assignment.camera} -> {assignment.model}: {reason}", err=True)
    if rejected:
        sys.exit(EXIT_CONFIG)


@main.group()
def models() -> None:
    """The model registry: which models exist, their versions, and whether they may be assigned."""


@models.command("list")
@database_options
@click.option("--enabled/--disabled", "enabled", default=None, help="Only enabled (or only disabled) models.")
@click.option("--task", default=None, help="Only models whose current version declares this task.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models_list(database: Optional[str], registry_path: Optional[Path], enabled: Optional[bool], task: Optional[str],
                as_json: bool) -> None:
    """List registered models."""
    with _open_registry(database, registry_path) as registry:
        entries = registry.list(enabled=enabled, task=task)
    if as_json:
        click.echo(json.dumps([{"model_id": e.model_id, "enabled": e.enabled, "version": e.current_version,
                                "versions": e.versions, "name": e.name} for e in entries], indent=2))
        return
    click.echo(f"{'model_id':<24} {'version':<10} {'enabled':<8} name")
    for entry in entries:
        click.echo(f"{entry.model_id:<24} {entry.current_version:<10} {'yes' if entry.enabled else 'NO':<8} {entry.name}")


@models.command("show")
@click.argument("model_id")
@database_options
def models_show(model_id: str, database: Optional[str], registry_path: Optional[Path]) -> None:
    """Print one model's registry entry and current metadata as JSON."""
    with _open_registry(database, registry_path) as registry:
        entry = registry.get(model_id)
    if entry is None:
        raise click.ClickException(f"model {model_id!r} is not in the registry")
    click.echo(json.dumps({"model_id": entry.model_id, "enabled": entry.enabled, "current_version": entry.current_version,
                           "versions": entry.versions, "source": entry.source, "updated_at": entry.updated_at,
                           "metadata": entry.metadata}, indent=2))


def _set_enabled(model_id: str, database: Optional[str], registry_path: Optional[Path], enabled: bool) -> None:
    with _open_registry(database, registry_path) as registry:
        try:
            registry.set_enabled(model_id, enabled)
        except RegistryError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"{model_id}: {'enabled' if enabled else 'disabled'}")


@models.command("enable")
@click.argument("model_id")
@database_options
def models_enable(model_id: str, database: Optional[str], registry_path: Optional[Path]) -> None:
    """Allow assignments to MODEL_ID."""
    _set_enabled(model_id, database, registry_path, True)


@models.command("disable")
@click.argument("model_id")
@database_options
def models_disable(model_id: str, database: Optional[str], registry_path: Optional[Path]) -> None:
    """Reject assignments to MODEL_ID; a running core stops its subscriptions."""
    _set_enabled(model_id, database, registry_path, False)


@models.command("import")
@click.argument("model_yaml", required=False, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--from-daemon", "daemon_model_id", default=None, metavar="MODEL_ID",
              help="Import what the running daemon of MODEL_ID reports through its describe op.")
@click.option("--socket-dir", envvar=SOCKET_DIR_ENV, default=None, metavar="DIR")
@click.option("--disabled", is_flag=True, help="Register the model disabled (new models start enabled).")
@database_options
def models_import(model_yaml: Optional[Path], daemon_model_id: Optional[str], socket_dir: Optional[str],
                  disabled: bool, database: Optional[str], registry_path: Optional[Path]) -> None:
    """Register a model from MODEL_YAML, or from a running daemon (--from-daemon)."""
    if (model_yaml is None) == (daemon_model_id is None):
        raise click.UsageError("give either MODEL_YAML or --from-daemon MODEL_ID")
    enabled = False if disabled else None
    with _open_registry(database, registry_path) as registry:
        try:
            if model_yaml is not None:
                entry = registry.import_model_yaml(model_yaml, enabled)
            else:
                assert daemon_model_id is not None
                entry = registry.import_from_daemon(socket_path(daemon_model_id, socket_dir), enabled=enabled)
        except (ModelConfigError, RegistryError) as exc:
            click.echo(f"cannot import: {exc}", err=True)
            sys.exit(EXIT_CONFIG)
        except ClientError as exc:
            click.echo(f"cannot import: {exc}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
    click.echo(f"{entry.model_id} {entry.current_version} imported ({'enabled' if entry.enabled else 'disabled'}) from {entry.source}")


register(main)

if __name__ == "__main__":
    main()
