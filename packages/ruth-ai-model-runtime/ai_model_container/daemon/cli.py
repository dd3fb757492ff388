"""``ruth-model``: serve a model, check a model.yaml, talk to a running daemon.

Typical first session (``write-frames`` and ``new`` come with the developer
tools, ``pip install ruth-ai-model-tools``, which add their commands here):

    ruth-model write-frames --camera cam1 --source synthetic &
    ruth-model serve models/fall-detection
    ruth-model health fall-detection
    ruth-model infer fall-detection --camera cam1
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Optional

import click

from ai_model_container import __version__
from ai_model_container.contract.client import ClientError, ModelClient, inference_request
from ai_model_container.contract.errors import RequestError
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.model_config import ModelConfigError, WeightsError, load_model_config, verify_weights
from ai_model_container.contract.paths import SOCKET_DIR_ENV, models_root, socket_path
from ai_model_container.daemon.container import ModelDaemon, StartupError
from ai_model_container.daemon.discovery import discover_models
from ai_model_container.daemon.socket_claim import SocketInUseError

EXIT_CONFIG = 2
EXIT_UNAVAILABLE = 3
PLUGIN_GROUP = "ruth_model.commands"

socket_dir_option = click.option(
    "--socket-dir", envvar=SOCKET_DIR_ENV, default=None, metavar="DIR",
    help=f"Directory of the model sockets (default: ${SOCKET_DIR_ENV} or /tmp).",
)


def configure_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ruth-model")
def main() -> None:
    """Run and operate Ruth AI model daemons (one model per process, one socket per model)."""


@main.command()
@click.argument("model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@socket_dir_option
@click.option("--model-id", default=None, help="Serve under this id instead of model.yaml's model_id.")
@click.option("--drain-timeout", default=10.0, show_default=True, help="Seconds to finish requests on shutdown.")
@click.option("--listen-fd", type=int, default=None, hidden=True,
              help="Serve this inherited listening socket (serve-all hands it over) instead of binding the path.")
@click.option("--ready-fd", type=int, default=None, hidden=True,
              help="Write 'ready' to this pipe once connections are accepted (serve-all waits for it).")
@click.option("-v", "--verbose", is_flag=True)
def serve(model_dir: Path, socket_dir: Optional[str], model_id: Optional[str], drain_timeout: float,
          listen_fd: Optional[int], ready_fd: Optional[int], verbose: bool) -> None:
    """Serve the model in MODEL_DIR (a folder with model.yaml) until SIGTERM or Ctrl-C."""
    configure_logging(verbose)
    daemon = ModelDaemon(model_dir, socket_dir=socket_dir, model_id=model_id, drain_timeout_s=drain_timeout,
                         listen_fd=listen_fd, ready_fd=ready_fd)
    try:
        daemon.run()
    except (ModelConfigError, WeightsError, StartupError) as exc:
        logging.getLogger("ruth-model").error("cannot start: %s", exc)
        sys.exit(EXIT_CONFIG)
    except SocketInUseError as exc:
        logging.getLogger("ruth-model").error("cannot start: %s", exc)
        sys.exit(EXIT_UNAVAILABLE)


@main.command()
@click.argument("model_yaml", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--check-weights/--no-check-weights", default=True, show_default=True,
              help="Also verify the weight files against their sha256.")
def validate(model_yaml: tuple[Path, ...], check_weights: bool) -> None:
    """Check one or more model.yaml files; exit 2 if any is invalid."""
    failed = False
    for path in model_yaml:
        try:
            config = load_model_config(path)
            if check_weights:
                verify_weights(config, path.parent)
        except (ModelConfigError, WeightsError) as exc:
            click.echo(f"INVALID {exc}", err=True)
            failed = True
            continue
        click.echo(f"OK      {path}: {config.model_id} {config.model_version} ({config.entry_point})")
    if failed:
        sys.exit(EXIT_CONFIG)


@main.command()
@click.argument("root", required=False)
def discover(root: Optional[str]) -> None:
    """List the models under ROOT (default $RUTH_MODELS_ROOT or /opt/ruth-ai/models)."""
    result = discover_models(models_root(root))
    for model in result.models:
        click.echo(f"OK      {model.config.model_id:<24} {model.config.model_version:<10} {model.directory}")
    for path, reason in result.invalid:
        click.echo(f"INVALID {path}: {reason}", err=True)


@main.command("serve-all")
@click.argument("root", metavar="[MODELS_ROOT]", required=False)
@socket_dir_option
@click.option("--backoff-max", default=30.0, show_default=True, help="Longest wait in seconds before restarting a dead model.")
@click.option("--stable-after", default=30.0, show_default=True, help="Seconds up after which a model's backoff resets.")
@click.option("-v", "--verbose", is_flag=True)
def serve_all(root: Optional[str], socket_dir: Optional[str], backoff_max: float, stable_after: float, verbose: bool) -> None:
    """Serve every valid model under MODELS_ROOT, each in its own process, restarting any that dies.

    MODELS_ROOT defaults to $RUTH_MODELS_ROOT or /opt/ruth-ai/models. While a
    model is down its socket answers health as DEGRADED with the reason.
    """
    from ai_model_container.daemon.supervisor import DEFAULT_BACKOFF_INITIAL_S, Supervisor

    configure_logging(verbose)
    directory = models_root(root)
    result = discover_models(directory)
    for path, reason in result.invalid:
        logging.getLogger("ruth-model").error("skipping %s: %s", path, reason)
    if not result.models:
        logging.getLogger("ruth-model").error("no valid model under %s", directory)
        sys.exit(EXIT_CONFIG)
    supervisor = Supervisor(result.models, socket_dir, DEFAULT_BACKOFF_INITIAL_S, backoff_max, stable_after)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: supervisor.stop())
    supervisor.run()


def _client(model_id: str, socket_dir: Optional[str], timeout: float) -> ModelClient:
    return ModelClient(socket_path(model_id, socket_dir), request_timeout_s=timeout)


def _print_json(payload: str) -> None:
    click.echo(json.dumps(json.loads(payload), indent=2))


def _control_command(op: str, summary: str) -> None:
    @main.command(name=op, help=f"{summary} Exits 3 if the daemon is unreachable.")
    @click.argument("model_id")
    @socket_dir_option
    @click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for the answer.")
    def command(model_id: str, socket_dir: Optional[str], timeout: float) -> None:
        try:
            with _client(model_id, socket_dir, timeout) as client:
                response = getattr(client, op)()
        except ClientError as exc:
            click.echo(f"{model_id}: {exc}", err=True)
            sys.exit(EXIT_UNAVAILABLE)
        _print_json(response.model_dump_json())
        if op == "health" and not response.ready:
            sys.exit(EXIT_UNAVAILABLE)


_control_command("health", "Print the health of MODEL_ID's daemon; exits 3 unless READY.")
_control_command("describe", "Print MODEL_ID's model.yaml, runtime version and device.")
_control_command("stats", "Print MODEL_ID's request, error and latency counters.")


@main.command()
@click.argument("model_id")
@click.option("--camera", "camera_id", required=True, help="Camera whose ring holds the frame.")
@click.option("--frame-id", type=int, default=None, help="Frame to analyse (default: the newest).")
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE", help="Per-request config, JSON values.")
@socket_dir_option
@click.option("--timeout", default=10.0, show_default=True)
def infer(model_id: str, camera_id: str, frame_id: Optional[int], options: tuple[str, ...],
          socket_dir: Optional[str], timeout: float) -> None:
    """Run MODEL_ID on a frame of CAMERA and print the response."""
    try:
        header, newest, _ = FrameReader().newest_frame(camera_id)
    except RequestError as exc:
        raise click.ClickException(exc.message) from None
    config = {}
    for option in options:
        key, _, value = option.partition("=")
        try:
            config[key] = json.loads(value)
        except json.JSONDecodeError:
            config[key] = value
    request = inference_request(model_id, camera_id, frame_id or newest, header.width, header.height, config)
    try:
        with _client(model_id, socket_dir, timeout) as client:
            response = client.infer(request)
    except ClientError as exc:
        click.echo(f"{model_id}: {exc}", err=True)
        sys.exit(EXIT_UNAVAILABLE)
    _print_json(response.model_dump_json())
    if response.error_code is not None:
        sys.exit(1)


def _add_plugin_commands() -> None:
    """Commands other distributions register under the ``ruth_model.commands`` entry-point group.

    The developer tools add ``new`` and ``write-frames`` this way, so the runtime image (which
    does not ship them) has a ``ruth-model`` without them rather than one that fails to import.
    """
    for entry_point in entry_points(group=PLUGIN_GROUP):
        main.add_command(entry_point.load(), name=entry_point.name)


_add_plugin_commands()


if __name__ == "__main__":
    main()
