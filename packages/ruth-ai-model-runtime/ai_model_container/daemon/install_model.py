"""Install one model into an image at build time, so a broken model fails the build, not the deployment.

Run by the install stage of every model Dockerfile (runtime-base-image/README.md):

    RUN ruth-install-model /build

It reads /build/model.yaml, checks the weights against their sha256, installs
requirements.txt (and requirements-no-deps.txt, without dependency
resolution, for packages whose declared dependencies are wrong or too heavy)
under /opt/ruth-ai/deps, constrained to the runtime's own pins, copies the
model to /opt/ruth-ai/models/<model_id> without its wheelhouse, and imports
the handler once. With OFFLINE=1 (a build argument) pip uses only the
wheelhouse build.sh left in /build/.wheelhouse and never the network.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click

from ai_model_container.contract.model_config import (
    MODEL_FILE,
    ModelConfigError,
    WeightsError,
    load_model_config,
    verify_weights,
)
from ai_model_container.contract.paths import models_root
from ai_model_container.daemon.container import StartupError, load_handler
from ai_model_container.device import Device

DEPS_PREFIX = Path("/opt/ruth-ai/deps")
RUNTIME_CONSTRAINTS = Path("/opt/ruth-ai/runtime-constraints.txt")
WHEELHOUSE = ".wheelhouse"
REQUIREMENTS = (("requirements.txt", []), ("requirements-no-deps.txt", ["--no-deps"]))


def pip_install(source: Path, offline: bool) -> None:
    wheelhouse = source / WHEELHOUSE
    if offline and not wheelhouse.is_dir():
        raise click.ClickException(f"OFFLINE=1 but {wheelhouse} is missing; build with build.sh --wheelhouse")
    common = [sys.executable, "-m", "pip", "install", "--no-cache-dir", "--prefix", str(DEPS_PREFIX),
              "--constraint", str(RUNTIME_CONSTRAINTS)]
    common += ["--no-index"] if offline else []
    common += ["--find-links", str(wheelhouse)] if wheelhouse.is_dir() else []
    for name, extra in REQUIREMENTS:
        if (source / name).is_file():
            subprocess.run(common + extra + ["--requirement", str(source / name)], check=True)


def import_handler(directory: Path) -> None:
    """Instantiate the handler the way the daemon will (without loading weights)."""
    config = load_model_config(directory / MODEL_FILE)
    try:
        load_handler(config, directory, Device("cpu", "cpu")).close()
    except StartupError as exc:
        raise click.ClickException(str(exc)) from None


@click.command()
@click.argument("source", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--import-only", is_flag=True, hidden=True,
              help="Only import SOURCE's handler (run in a fresh interpreter by the install).")
def install(source: Path, import_only: bool) -> None:
    """Install the model in SOURCE (a copy of models/<id>/) into this image."""
    if import_only:
        import_handler(source)
        return
    try:
        config = load_model_config(source / MODEL_FILE)
        verify_weights(config, source)
    except (ModelConfigError, WeightsError) as exc:
        raise click.ClickException(str(exc)) from None
    pip_install(source, offline=os.environ.get("OFFLINE") == "1")
    destination = models_root() / config.model_id
    shutil.copytree(source, destination, ignore=shutil.ignore_patterns(WHEELHOUSE, "__pycache__", "*.pyc"))
    subprocess.run(["chmod", "-R", "a+rX,go-w", str(destination)], check=True)  # readable by the unprivileged user
    # A fresh interpreter sees /opt/ruth-ai/deps as the daemon will: this one looked before pip filled it.
    if subprocess.run([sys.executable, "-m", "ai_model_container.daemon.install_model", "--import-only", str(destination)]).returncode != 0:
        raise click.ClickException(f"{config.model_id}: the handler does not import with the installed packages")
    click.echo(f"installed {config.model_id} {config.model_version} in {destination}")


if __name__ == "__main__":
    install()
