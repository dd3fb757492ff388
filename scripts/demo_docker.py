"""The demo's ``--docker`` mode: the model daemons run as the images build.sh builds, not as local processes.

Each model runs as ``ruth-ai/<model_id>:<tag>`` with the two mounts of
runtime-base-image/README.md: the demo's socket directory at /run/ruth-ai and
/dev/shm read-only. The container user is 10001 in the group that owns the
socket directory (``RUTH_IPC_GID``, default 10001); the directory is handed to
that group (setgid, 2770) so the daemon can create its socket there, and the
demo (root) connects to it. Stopping sends SIGTERM (``docker stop``): the
daemon drains, removes its socket and exits; the container is then removed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from docker.models.containers import Container

CONTAINER_SOCKET_DIR = "/run/ruth-ai"
CONTAINER_UID = 10001
IPC_GID_ENV = "RUTH_IPC_GID"
DEFAULT_IPC_GID = 10001
STOP_GRACE_S = 15  # the daemon drains for up to 10 s after SIGTERM (docker-compose.yml uses the same)


class DockerUnavailable(RuntimeError):
    """No engine answers, or an image the demo needs is not built; the message says what to run."""


def image_name(model_id: str, tag: str) -> str:
    return f"ruth-ai/{model_id}:{tag}"


def build_command(model_dir: Path) -> str:
    return f"./build.sh model models/{model_dir.name}   (after ./build.sh base; or ./build.sh --air-gapped all)"


def connect() -> docker.DockerClient:
    try:
        client = docker.from_env()
        client.ping()
    except DockerException as exc:
        raise DockerUnavailable(f"--docker needs a Docker engine: {exc}") from None
    return client


def check_images(client: docker.DockerClient, models: list[tuple[str, Path]], tag: str) -> None:
    """Every model's image exists, or one error naming the build.sh command for each missing one."""
    missing = []
    for model_id, directory in models:
        try:
            client.images.get(image_name(model_id, tag))
        except ImageNotFound:
            missing.append(f"{image_name(model_id, tag)}: {build_command(directory)}")
    if missing:
        raise DockerUnavailable("model images not built:\n  " + "\n  ".join(missing))


def share_socket_dir(socket_dir: Path) -> int:
    """Hand the socket directory to the IPC group (setgid, 2770), as the README's sharing convention says."""
    gid = int(os.environ.get(IPC_GID_ENV, DEFAULT_IPC_GID))
    os.chown(socket_dir, -1, gid)
    os.chmod(socket_dir, 0o2770)
    return gid


@dataclass
class ModelContainer:
    """A running model image, with the ``alive``/``tail``/``stop`` the demo uses for its local children too."""

    name: str
    container: Container

    def alive(self) -> bool:
        try:
            self.container.reload()
        except NotFound:
            return False
        return self.container.status in ("created", "running")

    def tail(self, lines: int = 15) -> str:
        try:
            return self.container.logs(tail=lines).decode(errors="replace")
        except (NotFound, APIError) as exc:
            return f"(no logs: {exc})"

    def stop(self) -> None:
        """SIGTERM, up to STOP_GRACE_S to drain, then the container is removed."""
        try:
            self.container.stop(timeout=STOP_GRACE_S)
            self.container.remove(force=True)
        except NotFound:
            pass


def run_model(client: docker.DockerClient, model_id: str, tag: str, socket_dir: Path, gid: int,
              name: str) -> ModelContainer:
    container = client.containers.run(
        image_name(model_id, tag), detach=True, name=name, network_mode="none",
        user=f"{CONTAINER_UID}:{gid}", cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
        labels={"ruth-ai.demo": name},
        volumes={str(socket_dir): {"bind": CONTAINER_SOCKET_DIR, "mode": "rw"},
                 "/dev/shm": {"bind": "/dev/shm", "mode": "ro"}},
    )
    return ModelContainer(name, container)
