"""``ruth-ai`` commands on the database: schema, assignments, cameras, nodes, and the discovery API.

``cli.py`` holds run, status, check and models and registers these. Every
command that touches storage takes ``--database URL`` (or ``--registry PATH``
for a SQLite file; default: $RUTH_AI_DATABASE, $RUTH_AI_REGISTRY, then
~/.local/share/ruth-ai/registry.sqlite3), and storage failures end the same
way everywhere (``StorageAwareGroup``): exit 2 for something to fix (a bad
URL, a schema to upgrade, an assignment the registry refuses), exit 3 when
the database does not answer.

    ruth-ai db upgrade --database postgresql://ruth@/ruth_ai?host=/run/postgresql
    ruth-ai assign lobby fall-detection --fps 5 --node edge-1
    ruth-ai assignments import assignments.yaml --node edge-1 --replace
    ruth-ai run --node edge-1 --event-sink database
    ruth-ai api --listen 127.0.0.1:8090 --admin-token-file /etc/ruth-ai/admin-token
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Optional, TypeVar

import click
import yaml

from .assignments import Assignment, AssignmentError, AssignmentFile, load_assignments
from .storage.assignment_store import AssignmentStore
from .storage.database import Database
from .storage.errors import AssignmentConflict, AssignmentRejected, DatabaseUnavailable, InvalidDocument, SchemaError, StorageError
from .storage.url import DATABASE_ENV, DatabaseUrlError, resolve_database

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
ADMIN_TOKEN_ENV = "RUTH_AI_ADMIN_TOKEN"

F = TypeVar("F", bound=Callable[..., Any])


class StorageAwareGroup(click.Group):
    """Ends any subcommand's storage failure with a one-line message and the exit code scripts test for."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DatabaseUrlError as exc:
            _fail(str(exc), EXIT_CONFIG)
        except (AssignmentRejected, AssignmentConflict, InvalidDocument, SchemaError) as exc:
            _fail(str(exc), EXIT_CONFIG)
        except DatabaseUnavailable as exc:
            _fail(str(exc), EXIT_UNAVAILABLE)


def _fail(message: str, code: int) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def database_options(function: F) -> F:
    """``--database URL`` and ``--registry PATH`` (a SQLite file), mutually exclusive."""
    function = click.option(
        "--registry", "registry_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
        help="SQLite database file (shortcut for --database sqlite:///PATH).")(function)
    function = click.option(
        "--database", "database", default=None, metavar="URL",
        help=f"Database URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: ${DATABASE_ENV}, "
             "$RUTH_AI_REGISTRY, else ~/.local/share/ruth-ai/registry.sqlite3).")(function)
    return function


def open_database(database: Optional[str], registry_path: Optional[Path], upgrade: Optional[bool] = None) -> Database:
    """The command's database, schema checked (SQLite upgraded); storage errors end the command (see the group)."""
    return Database.open(resolve_database(database, registry_path), upgrade=upgrade)


def with_database(function: Callable[..., Any]) -> Callable[..., Any]:
    """Open the database from --database/--registry, pass it as ``db``, close it after."""

    @database_options
    @functools.wraps(function)
    def wrapper(database: Optional[str], registry_path: Optional[Path], **kwargs: Any) -> Any:
        with open_database(database, registry_path) as db:
            return function(db=db, **kwargs)

    return wrapper


# -- ruth-ai db -----------------------------------------------------------------------------


@click.group("db")
def db_group() -> None:
    """The database schema (versioned migrations)."""


@db_group.command("upgrade")
@database_options
def db_upgrade(database: Optional[str], registry_path: Optional[Path]) -> None:
    """Apply pending schema migrations (a SQLite file from before migrations keeps its data)."""
    from .storage.migrate import run_upgrade

    with Database(resolve_database(database, registry_path)) as db:
        result = run_upgrade(db)
    if result.changed:
        note = " (a registry from before migrations: its models were kept)" if result.migrated_legacy else ""
        click.echo(f"{db.location.display()}: schema {result.before or '(none)'} -> {result.after}{note}")
    else:
        click.echo(f"{db.location.display()}: schema {result.after}, up to date")


@db_group.command("current")
@database_options
def db_current(database: Optional[str], registry_path: Optional[Path]) -> None:
    """Print the schema revision; exits 2 if it is not this version's head."""
    from .storage.migrate import current_revision, head_revision

    with Database(resolve_database(database, registry_path)) as db:
        current = current_revision(db)
    head = head_revision()
    if current == head:
        click.echo(f"{current} (head)")
        return
    click.echo(f"{current or '(none)'} (this Ruth AI Core needs {head}: run ruth-ai db upgrade)")
    sys.exit(EXIT_CONFIG)


# -- assignments ----------------------------------------------------------------------------


def _parse_config(text: Optional[str]) -> dict[str, Any]:
    if text is None:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(f"not JSON: {exc}", param_hint="--config") from None
    if not isinstance(value, dict):
        raise click.BadParameter("a JSON object, e.g. '{\"threshold\": 0.5}'", param_hint="--config")
    return value


@click.command("assign")
@click.argument("camera")
@click.argument("model")
@click.option("--fps", type=float, required=True, help="Frames per second to send to the model.")
@click.option("--node", default=None, help="The node (host) that runs the camera; required for a new camera.")
@click.option("--max-in-flight", type=int, default=1, show_default=True)
@click.option("--config", "config_json", default=None, metavar="JSON", help="Per-request options for the model.")
@with_database
def assign(db: Database, camera: str, model: str, fps: float, node: Optional[str], max_in_flight: int,
           config_json: Optional[str]) -> None:
    """Assign CAMERA to MODEL (checked against the registry: unknown or disabled models are refused)."""
    try:
        assignment = Assignment(camera=camera, model=model, fps=fps, max_in_flight=max_in_flight,
                                config=_parse_config(config_json))
    except ValueError as exc:
        _fail(f"invalid assignment: {_validation_message(exc)}", EXIT_CONFIG)
    placed = AssignmentStore(db).put(assignment, node)
    click.echo(f"{camera} -> {model} at {fps:g} fps on node {placed.node}")


@click.command("unassign")
@click.argument("camera")
@click.argument("model")
@with_database
def unassign(db: Database, camera: str, model: str) -> None:
    """Remove the assignment of CAMERA to MODEL (exits 1 if there was none)."""
    if not AssignmentStore(db).remove(camera, model):
        raise click.ClickException(f"{camera} is not assigned to {model}")
    click.echo(f"{camera} -> {model} removed")


@click.group("assignments")
def assignments_group() -> None:
    """Assignments in the database; YAML files import and export them."""


@assignments_group.command("list")
@click.option("--node", default=None)
@click.option("--camera", default=None)
@click.option("--json", "as_json", is_flag=True)
@with_database
def assignments_list(db: Database, node: Optional[str], camera: Optional[str], as_json: bool) -> None:
    """List assignments, optionally of one node or camera."""
    placed = AssignmentStore(db).list(node=node, camera_id=camera)
    if as_json:
        click.echo(json.dumps([{"node": p.node, **p.assignment.model_dump()} for p in placed], indent=2))
        return
    click.echo(f"{'node':<16} {'camera':<20} {'model':<24} {'fps':>6} {'in-flight':>9} config")
    for p in placed:
        a = p.assignment
        click.echo(f"{p.node:<16} {a.camera:<20} {a.model:<24} {a.fps:>6g} {a.max_in_flight:>9} "
                   f"{json.dumps(a.config, sort_keys=True) if a.config else ''}")


@assignments_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--node", required=True, help="The node that runs these cameras.")
@click.option("--replace", is_flag=True, help="Also remove the node's assignments that are not in the file.")
@with_database
def assignments_import(db: Database, path: Path, node: str, replace: bool) -> None:
    """Write an assignments file into the database for NODE, all or nothing (exits 2 if any is refused)."""
    try:
        wanted = load_assignments(path).assignments
    except AssignmentError as exc:
        _fail(str(exc), EXIT_CONFIG)
    result = AssignmentStore(db).import_for_node(node, wanted, replace=replace)
    click.echo(f"node {node}: {len(result.added)} added, {len(result.changed)} changed, "
               f"{len(result.removed)} removed, {len(result.unchanged)} unchanged")


@assignments_group.command("export")
@click.option("--node", required=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here instead of stdout.")
@with_database
def assignments_export(db: Database, node: str, output: Optional[Path]) -> None:
    """Write NODE's assignments as an assignments file (what ruth-ai run --assignments reads)."""
    document = AssignmentFile(assignments=AssignmentStore(db).for_node(node)).model_dump(mode="json")
    text = "# assignments of node {node}, exported from {where}\n{body}".format(
        node=node, where=db.location.display(), body=yaml.safe_dump(document, sort_keys=False))
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"{len(document['assignments'])} assignments of node {node} -> {output}")


@click.group("cameras")
def cameras_group() -> None:
    """Which node runs each camera."""


@cameras_group.command("move")
@click.argument("camera")
@click.option("--node", required=True)
@with_database
def cameras_move(db: Database, camera: str, node: str) -> None:
    """Run CAMERA (and all its assignments) on NODE from now on."""
    before = AssignmentStore(db).move_camera(camera, node)
    click.echo(f"{camera}: node {before} -> {node}")


@click.command("nodes")
@with_database
def nodes(db: Database) -> None:
    """List the nodes that run cameras, with their camera and assignment counts."""
    click.echo(f"{'node':<24} {'cameras':>8} {'assignments':>12}")
    for summary in AssignmentStore(db).nodes():
        click.echo(f"{summary.node:<24} {summary.cameras:>8} {summary.assignments:>12}")


# -- the API --------------------------------------------------------------------------------


@click.command("api")
@database_options
@click.option("--listen", default="127.0.0.1:8090", show_default=True, metavar="HOST:PORT",
              help="Address to serve on; read endpoints are open to whoever can reach it.")
@click.option("--admin-token-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help=f"File holding the bearer token admin calls must present (or ${ADMIN_TOKEN_ENV}); "
                   "without one, admin calls are refused.")
@click.option("-v", "--verbose", is_flag=True)
def api(database: Optional[str], registry_path: Optional[Path], listen: str, admin_token_file: Optional[Path],
        verbose: bool) -> None:
    """Serve the read-only discovery API (and the token-protected admin API) over HTTP/JSON."""
    from .api.server import ListenAddressError, parse_listen, serve  # FastAPI is imported only here
    from .cli import configure_logging

    configure_logging(verbose)
    try:
        host, port = parse_listen(listen)
    except ListenAddressError as exc:
        _fail(str(exc), EXIT_CONFIG)
    token = read_admin_token(admin_token_file)
    with open_database(database, registry_path) as db:
        serve(db, host, port, token)


def read_admin_token(path: Optional[Path]) -> Optional[str]:
    """The admin token from the file or the environment; too short a token is refused."""
    if path is not None:
        token: Optional[str] = path.read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get(ADMIN_TOKEN_ENV, "").strip() or None
    if token is not None and len(token) < 16:
        _fail("the admin token must be at least 16 characters", EXIT_CONFIG)
    return token


def _validation_message(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in errors())
    return str(exc)


def register(main: click.Group) -> None:
    """Add these commands to ``ruth-ai``."""
    for command in (db_group, assign, unassign, assignments_group, cameras_group, nodes, api):
        main.add_command(command)


__all__ = ["EXIT_CONFIG", "EXIT_UNAVAILABLE", "StorageAwareGroup", "StorageError", "database_options",
           "open_database", "register", "with_database"]
