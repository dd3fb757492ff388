"""The container's entry point and its HEALTHCHECK: serve the model this image carries, or check it.

Which model: $MODEL_DIR when set, else the one directory under $RUTH_MODELS_ROOT
(/opt/ruth-ai/models/<model_id>, where ruth-install-model puts it), so a model
image needs no CMD. The model id is $MODEL_ID when set, else model.yaml's, and
the health check derives it the same way, so it asks the socket the daemon
opened. The daemon runs in this process (PID 1), so `docker stop`'s SIGTERM
reaches it directly and it drains and removes its socket.
"""

from __future__ import annotations

import os
from pathlib import Path

import click

from ai_model_container.contract.model_config import MODEL_FILE, ModelConfigError, load_model_config
from ai_model_container.contract.paths import models_root
from ai_model_container.daemon.cli import main as ruth_model


def model_dir() -> Path:
    if os.environ.get("MODEL_DIR"):
        return Path(os.environ["MODEL_DIR"])
    root = models_root()
    found = sorted(path.parent for path in root.glob(f"*/{MODEL_FILE}"))
    if len(found) != 1:
        raise click.UsageError(
            f"{len(found)} models under {root}; set MODEL_DIR to the one to serve "
            "(a model image installs exactly one with ruth-install-model)"
        )
    return found[0]


def health_target(directory: Path) -> str:
    """The id the daemon serves under: $MODEL_ID, else model.yaml's."""
    if os.environ.get("MODEL_ID"):
        return os.environ["MODEL_ID"]
    try:
        return load_model_config(directory / MODEL_FILE).model_id
    except ModelConfigError as exc:
        raise click.ClickException(str(exc)) from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--health", is_flag=True, help="Exit 0 only if the daemon answers READY over its socket.")
def run(health: bool) -> None:
    """Serve this container's model until SIGTERM, or check its health."""
    directory = model_dir()
    if health:
        arguments = ["health", health_target(directory)]
    else:
        override = os.environ.get("MODEL_ID")
        arguments = ["serve", str(directory)] + (["--model-id", override] if override else [])
    ruth_model.main(arguments, prog_name="ruth-model")


if __name__ == "__main__":
    run()
