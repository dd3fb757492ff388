"""The template README's "Build and run the image", run as written, so it cannot rot.

The fenced bash blocks of that section are joined into one script and run from the
repository root: the blocks without a label and the one labelled "# air-gapped" (no
registry is reachable in CI); the "# online" block must build the same images the same
way, minus local-base and --air-gapped. Only what would collide with a developer's own
work is substituted: the model id (the README's ppe-detection, created here with
``ruth-model new``), the socket directory (a fresh one instead of /tmp/ruth-sockets)
and ``.venv/bin/`` (the interpreter running the suite). The base image is built under a
test tag (build.sh's RUNTIME_TAG), so a developer's ruth-ai/model-runtime tags are never
touched.

The same images then show what a newcomer gets wrong without the README: a socket
directory Docker creates (root 0755) and a read-only mount each stop the container
with one line that says what to fix. Every build must leave no untagged image behind.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import docker
import pytest
from docker.errors import ImageNotFound, NotFound
from docker_engine import connect, unavailable

import ai_model_container

pytestmark = [pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
README = REPO / "models" / "_template" / "README.md"
SECTION = "Build and run the image"
README_MODEL_ID = "ppe-detection"
README_SOCKET_DIR = "/tmp/ruth-sockets"
LOCAL_BASE_IMAGE = os.environ.get("RUTH_TEST_BASE_IMAGE", "local/debian-python:bookworm")
RUN_ID = uuid.uuid4().hex[:8]
MODEL_ID = f"readme-{RUN_ID}"
RUNTIME_TAG = f"{ai_model_container.__version__}-readme-{RUN_ID}"
CONTAINER_UID = CONTAINER_GID = 10001  # RUTH_UID / RUTH_GID in runtime-base-image/Dockerfile
BUILD_TIMEOUT_S = 1500


def section_blocks(title: str) -> list[str]:
    """The bash blocks of the README section ``## <n>. <title>``, in order."""
    text = README.read_text()
    match = re.search(rf"^## \d+\. {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"{README} has no section {title!r}"
    return re.findall(r"^```bash\n(.*?)^```", match.group(1), re.M | re.S)


def label(block: str) -> str | None:
    first = block.splitlines()[0]
    return first[2:] if first in ("# online", "# air-gapped") else None


def commands(block: str) -> list[str]:
    """The block's commands without comments, continuation lines joined."""
    joined = block.replace("\\\n", " ")
    lines = [line.split("  #")[0].strip() for line in joined.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def substitute(block: str, socket_dir: Path) -> str:
    venv_bin = f"{Path(sys.executable).parent}/"
    return (block.replace(README_MODEL_ID, MODEL_ID).replace(README_SOCKET_DIR, str(socket_dir))
            .replace(".venv/bin/", venv_bin))


def untagged_images(client: docker.DockerClient) -> set[str]:
    return {image.id for image in client.images.list(filters={"dangling": True})}


def step_ids(output: str) -> set[str]:
    """The image ids a classic-builder log names (" ---> <id>" after each step)."""
    return set(re.findall(r"^ ---> ([0-9a-f]{12})$", output, re.M))


def left_behind(client: docker.DockerClient, before: set[str], output: str) -> list[str]:
    """Untagged images that appeared since ``before`` and come from the builds in ``output``."""
    steps = step_ids(output)
    return sorted(image for image in untagged_images(client) - before if image.split(":")[1][:12] in steps)


def image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return client.images.get(name).id
    except ImageNotFound:
        return None


@dataclass
class ReadmeRun:
    client: docker.DockerClient
    socket_dir: Path
    script: str
    result: subprocess.CompletedProcess
    untagged_before: set[str]
    latest_base_before: str | None

    @property
    def output(self) -> str:
        return self.result.stdout


def build_env() -> dict[str, str]:
    return {**os.environ, "RUNTIME_TAG": RUNTIME_TAG, "LOCAL_BASE_IMAGE": LOCAL_BASE_IMAGE}


@pytest.fixture(scope="module")
def readme_run() -> Iterator[ReadmeRun]:
    client = connect()
    try:
        client.images.get(LOCAL_BASE_IMAGE)
    except ImageNotFound:
        unavailable(f"base image {LOCAL_BASE_IMAGE} is missing: run ./build.sh local-base (as root)")
    model_dir = REPO / "models" / MODEL_ID
    socket_dir = Path(f"/tmp/ruth-readme-{RUN_ID}")
    created = subprocess.run([sys.executable, "-m", "ai_model_container.daemon.cli", "new", MODEL_ID],
                             cwd=REPO, capture_output=True, text=True, timeout=60)
    assert created.returncode == 0, created.stderr
    blocks = [block for block in section_blocks(SECTION) if label(block) in (None, "air-gapped")]
    script = "set -euo pipefail\n" + "\n".join(substitute(block, socket_dir) for block in blocks)
    untagged_before = untagged_images(client)
    latest_base_before = image_id(client, "ruth-ai/model-runtime:latest")
    try:
        result = subprocess.run(["bash", "-c", script], cwd=REPO, env=build_env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=BUILD_TIMEOUT_S)
        yield ReadmeRun(client, socket_dir, script, result, untagged_before, latest_base_before)
    finally:
        for name in (MODEL_ID, f"{MODEL_ID}-docker-made", f"{MODEL_ID}-read-only"):
            try:
                client.containers.get(name).remove(force=True)
            except NotFound:
                pass
        for tag in (f"ruth-ai/{MODEL_ID}:latest", f"ruth-ai/{MODEL_ID}:0.1.0", f"ruth-ai/model-runtime:{RUNTIME_TAG}"):
            try:
                client.images.remove(tag, force=True)
            except ImageNotFound:
                pass
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.rmtree(REPO / "runtime-base-image" / ".wheelhouse", ignore_errors=True)
        shutil.rmtree(socket_dir, ignore_errors=True)


def test_the_readme_commands_run_as_written_and_the_container_answers(readme_run: ReadmeRun) -> None:
    result = readme_run.result
    assert result.returncode == 0, f"the README's commands failed:\n{readme_run.script}\n---\n{result.stdout[-6000:]}"
    answers = [line for line in result.stdout.splitlines() if line.startswith("{") and '"detections"' in line]
    assert re.search(r'^health: .*"status":"READY"', result.stdout, re.M), result.stdout[-3000:]
    assert len(answers) == 5 and all('"error_code": null' in line for line in answers), answers
    assert any('"class_name": "bright_spot"' in line for line in answers), "the template finds the bright spots"
    with pytest.raises(NotFound):
        readme_run.client.containers.get(MODEL_ID)  # docker stop && docker rm
    assert list(readme_run.socket_dir.iterdir()) == [], "the daemon removes its socket when stopped"


def test_the_readme_builds_leave_no_untagged_image_and_no_tag_of_yours_changes(readme_run: ReadmeRun) -> None:
    assert readme_run.result.returncode == 0
    client = readme_run.client
    assert len(step_ids(readme_run.output)) > 5, "the builds' logs are where the README shows them"
    assert left_behind(client, readme_run.untagged_before, readme_run.output) == []
    assert readme_run.output.count("build.sh: removed 1 untagged image(s)") == 2, "each build's install stage"
    assert image_id(client, "ruth-ai/model-runtime:latest") == readme_run.latest_base_before
    assert image_id(client, f"ruth-ai/model-runtime:{RUNTIME_TAG}") is not None


def test_the_online_block_builds_the_same_images_without_air_gapped_options() -> None:
    blocks = {label(block): commands(block) for block in section_blocks(SECTION) if label(block)}
    assert set(blocks) == {"online", "air-gapped"}
    expected = [command.replace("--air-gapped ", "") for command in blocks["air-gapped"] if "local-base" not in command]
    assert blocks["online"] == expected
    assert "./build.sh local-base" in blocks["air-gapped"]


def wait_exited(container, timeout_s: float = 120.0) -> int:
    result = container.wait(timeout=timeout_s)
    return result["StatusCode"]


def run_model_container(readme_run: ReadmeRun, name: str, host_dir: Path, mode: str) -> tuple[int, str]:
    """The README's container, default user (10001:10001), with ``host_dir`` as its socket directory."""
    container = readme_run.client.containers.run(
        f"ruth-ai/{MODEL_ID}:latest", detach=True, name=name, network_mode="none",
        volumes={str(host_dir): {"bind": "/run/ruth-ai", "mode": mode},
                 "/dev/shm": {"bind": "/dev/shm", "mode": "ro"}},
    )
    try:
        code = wait_exited(container)
        return code, container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)


def test_a_socket_directory_docker_creates_stops_the_container_with_what_to_run(readme_run: ReadmeRun) -> None:
    """The README's old docker run: the host directory did not exist, Docker made it root 0755."""
    assert readme_run.result.returncode == 0
    if os.geteuid() != 0:
        unavailable("checking the directory Docker creates needs root on the host")
    host_dir = Path(f"/tmp/ruth-readme-{RUN_ID}-docker-made")
    assert not host_dir.exists()
    try:
        code, logs = run_model_container(readme_run, f"{MODEL_ID}-docker-made", host_dir, "rw")
        status = host_dir.stat()
        assert (status.st_uid, status.st_gid, status.st_mode & 0o7777) == (0, 0, 0o755), "what Docker makes"
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
    assert code == 2, logs
    assert "Traceback" not in logs, logs
    (line,) = [line for line in logs.splitlines() if line.strip()]
    assert "socket directory /run/ruth-ai is not writable by this daemon: it is owned by 0:0 with mode 0755" in line
    assert f"uid {CONTAINER_UID}, gid {CONTAINER_GID}" in line
    assert f"install -d -m 2770 -g {CONTAINER_GID} /run/ruth-ai" in line and "on the host directory" in line


def test_a_read_only_socket_mount_stops_the_container_with_what_to_run(readme_run: ReadmeRun) -> None:
    assert readme_run.result.returncode == 0
    host_dir = Path(f"/tmp/ruth-readme-{RUN_ID}-read-only")
    host_dir.mkdir(mode=0o777)
    host_dir.chmod(0o777)  # writable by anyone: only the mount is read-only
    try:
        code, logs = run_model_container(readme_run, f"{MODEL_ID}-read-only", host_dir, "ro")
    finally:
        shutil.rmtree(host_dir, ignore_errors=True)
    assert code == 2, logs
    assert "Traceback" not in logs, logs
    (line,) = [line for line in logs.splitlines() if line.strip()]
    assert "socket directory /run/ruth-ai is on a read-only mount" in line and "without :ro" in line


def test_a_rebuild_removes_the_image_it_replaces(readme_run: ReadmeRun) -> None:
    """Last: it replaces the README's image. A changed model gets a new image; the old one does not linger."""
    assert readme_run.result.returncode == 0
    client = readme_run.client
    old = image_id(client, f"ruth-ai/{MODEL_ID}:latest")
    assert old is not None
    with (REPO / "models" / MODEL_ID / "model.yaml").open("a") as model_yaml:
        model_yaml.write(f"# rebuilt by the README test at {time.time()}\n")
    before = untagged_images(client)
    result = subprocess.run(["./build.sh", "--air-gapped", "model", f"models/{MODEL_ID}"], cwd=REPO,
                            env=build_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            timeout=BUILD_TIMEOUT_S)
    assert result.returncode == 0, result.stdout[-4000:]
    new = image_id(client, f"ruth-ai/{MODEL_ID}:latest")
    assert new is not None and new != old
    assert image_id(client, old) is None, "the image the rebuild took its tags from is removed"
    assert left_behind(client, before, result.stdout) == []
    assert "removed 2 untagged image(s)" in result.stdout
