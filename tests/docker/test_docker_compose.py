"""docker-compose.yml: it parses, and every model service keeps the deployment rules.

`docker-compose config` (or `docker compose config`) is the parser of record;
these tests read its normalised output, so they check what Compose will run,
not what the file looks like.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml
from docker_engine import compose_command

from ai_model_container.contract.model_config import load_model_config

pytestmark = pytest.mark.docker

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
GPU_OVERRIDE = REPO / "docker-compose.gpu.yml"
CONTAINER_UID = "10001"  # RUTH_UID in runtime-base-image/Dockerfile


def compose_config(*files: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    arguments = [argument for path in files for argument in ("-f", str(path))]
    return subprocess.run([*compose_command(), *arguments, "config"], cwd=REPO, capture_output=True, text=True,
                          env=env, timeout=60)


def services(*files: Path) -> dict[str, dict]:
    result = compose_config(*files)
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)["services"]


def test_every_real_model_has_a_service_with_the_deployment_rules() -> None:
    model_ids = {load_model_config(path).model_id for path in REPO.glob("models/[!_]*/model.yaml")}
    configured = services(COMPOSE)
    assert set(configured) == model_ids
    for name, service in configured.items():
        assert service["image"] == f"ruth-ai/{name}:latest"
        assert service["user"].split(":")[0] == CONTAINER_UID, "never root"
        assert service["restart"] == "unless-stopped"
        assert service["network_mode"] == "none" and service["cap_drop"] == ["ALL"]
        assert service["healthcheck"]["test"] == ["CMD", "ruth-serve", "--health"]
        assert sorted(service["volumes"]) == ["/dev/shm:/dev/shm:ro", "/run/ruth-ai:/run/ruth-ai:rw"]
        assert "deploy" not in service, "the base file must start on a host without a GPU"


def test_the_socket_directory_and_group_come_from_the_environment(tmp_path: Path) -> None:
    result = compose_config(COMPOSE, env={**os.environ, "RUTH_SOCKET_DIR": str(tmp_path), "RUTH_IPC_GID": "4242"})
    assert result.returncode == 0, result.stderr
    for service in yaml.safe_load(result.stdout)["services"].values():
        assert service["user"] == f"{CONTAINER_UID}:4242"
        assert f"{tmp_path}:/run/ruth-ai:rw" in service["volumes"]


def test_the_gpu_override_reserves_a_gpu_for_face_detection_only() -> None:
    configured = services(COMPOSE, GPU_OVERRIDE)
    devices = configured["face-detection"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    assert "deploy" not in configured["fall-detection"]


def test_a_broken_compose_file_is_rejected(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("services:\n  fall-detection:\n    restart: always\n    no_such_key: 1\n")
    result = compose_config(COMPOSE, broken)
    assert result.returncode != 0
    assert "no_such_key" in result.stderr


def comment_commands() -> list[str]:
    """The commands at the top of docker-compose.yml, as a reader pastes them (trailing comments dropped)."""
    commands = []
    for line in COMPOSE.read_text().splitlines():
        if not line.startswith("#"):
            break
        if line.startswith("#   ") and not line[4:].lstrip().startswith("#"):
            commands.append(line[4:].split("  #")[0].strip())
    return commands


def test_the_setup_commands_of_the_comments_work_pasted_with_nothing_set(tmp_path: Path) -> None:
    """RUTH_IPC_GID unset (a fresh shell): the comment's lines still make the directory compose mounts."""
    if os.geteuid() != 0:
        pytest.skip("the comment's install -g needs root")
    commands = comment_commands()
    setup = [command for command in commands if command.startswith(("export ", "install "))]
    assert [command.split()[0] for command in setup] == ["export", "install"]
    assert commands.index(setup[1]) < commands.index("docker-compose up -d")
    socket_dir = tmp_path / "sockets"
    env = {key: value for key, value in os.environ.items() if key != "RUTH_IPC_GID"}
    env["RUTH_SOCKET_DIR"] = str(socket_dir)  # instead of /run/ruth-ai; the export keeps a value already set
    script = "set -eu\n" + "\n".join(setup) + "\n" + " ".join([*compose_command(), "config"])
    result = subprocess.run(["bash", "-c", script], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    status = socket_dir.stat()
    assert (status.st_gid, status.st_mode & 0o7777) == (int(CONTAINER_UID), 0o2770)
    for service in yaml.safe_load(result.stdout)["services"].values():
        assert service["user"] == f"{CONTAINER_UID}:{CONTAINER_UID}"
        assert f"{socket_dir}:/run/ruth-ai:rw" in service["volumes"]
