"""The real Docker path: build air-gapped, run a model container, talk to it from the host, stop it.

The base image (the session's, tests/docker/conftest.py) and one model image
are built once, air-gapped the way build.sh --air-gapped does it (a local base image, wheelhouses filled by
the host's pip, builds with no network). The model container gets exactly
two mounts, the socket directory and /dev/shm (read-only), and the host side
follows the sharing convention of runtime-base-image/README.md: the socket
directory belongs to the container's group (setgid, 2770) and the frame ring
is readable by that group (0640), so nothing is world-accessible.

Which model: fall-detection when its directory is complete and its weights
match model.yaml, else models/_template; RUTH_DOCKER_TEST_MODEL picks one by
name. Each has its own check of real answers on real pixels.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import cv2
import docker
import numpy as np
import pytest
from core.test_demo import DEMO, assert_nothing_left, run_dir_and_tag
from docker.errors import BuildError
from docker.models.containers import Container
from docker_engine import unavailable
from docker_images import REPO, RUN_ID, Builds, build_failure, build_sh
from testkit import wait_for

import ai_model_container
from ai_model_container.contract.client import ClientError, ModelClient, ModelUnavailable, inference_request
from ai_model_container.contract.model_config import (
    MODEL_FILE,
    ModelConfig,
    ModelConfigError,
    WeightsError,
    load_model_config,
    verify_weights,
)
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import InferenceResponse
from ai_model_container.contract.shm_layout import segment_name
from ruth_model_tools.frame_writer import FrameWriter, synthetic_scene

pytestmark = [pytest.mark.docker, pytest.mark.slow]

PHOTOS = REPO / "tests" / "real_models" / "photos"
MODEL_CANDIDATES = ("fall-detection", "_template")
CONTAINER_UID = CONTAINER_GID = 10001  # RUTH_UID / RUTH_GID in runtime-base-image/Dockerfile
CONTAINER_SOCKET_DIR = "/run/ruth-ai"
READY_TIMEOUT_S = 120.0
HEALTHY_TIMEOUT_S = 90.0

Ask = Callable[[np.ndarray], InferenceResponse]


# ---- what each candidate model must answer --------------------------------------------------------


def check_fall_detection(ask: Ask) -> None:
    """A standing and a lying person in one frame: one no_fall, one fall, boxes where they are."""
    canvas = np.zeros((720, 1280, 3), np.uint8)
    canvas[104:616, 40:552] = cv2.imread(str(PHOTOS / "camera.jpg"))
    canvas[104:616, 700:1212] = cv2.rotate(cv2.imread(str(PHOTOS / "astronaut.jpg")), cv2.ROTATE_90_CLOCKWISE)
    response = ask(canvas)
    assert response.error_code is None, response.error
    people = sorted(response.detections, key=lambda d: d.bbox[0])
    assert [d.class_name for d in people] == ["no_fall", "fall"], people
    standing, lying = people
    assert standing.bbox[2] < 640 < lying.bbox[0]
    assert min(standing.confidence, lying.confidence) > 0.8


def check_template(ask: Ask) -> None:
    """The bright rectangles the reference writer draws come back as boxes, within one cell."""
    image, boxes = synthetic_scene(40, 1280, 720)
    response = ask(image)
    assert response.error_code is None, response.error
    found = sorted(tuple(d.bbox) for d in response.detections)
    expected = sorted((b.x_min, b.y_min, b.x_max, b.y_max) for b in boxes)
    assert len(found) == len(expected), (found, expected)
    for got, want in zip(found, expected):
        assert all(abs(g - w) <= 20 for g, w in zip(got, want)), (got, want)


CHECKS: dict[str, Callable[[Ask], None]] = {"fall-detection": check_fall_detection, "_template": check_template}


@dataclass(frozen=True)
class ModelUnderTest:
    name: str
    directory: Path
    config: ModelConfig

    def check(self, ask: Ask) -> None:
        CHECKS[self.name](ask)


def choose_model() -> ModelUnderTest:
    """The first candidate whose directory is complete and whose weights match model.yaml."""
    wanted = os.environ.get("RUTH_DOCKER_TEST_MODEL")
    names = (wanted,) if wanted else MODEL_CANDIDATES
    problems = []
    for name in names:
        directory = REPO / "models" / name
        if name not in CHECKS:
            problems.append(f"{name}: no check defined in this test")
            continue
        if not (directory / "Dockerfile").is_file():
            problems.append(f"{name}: no Dockerfile")
            continue
        try:
            config = load_model_config(directory / MODEL_FILE)
            verify_weights(config, directory)
        except (ModelConfigError, WeightsError) as exc:
            problems.append(str(exc))
            continue
        return ModelUnderTest(name, directory, config)
    pytest.fail("no model to build: " + "; ".join(problems), pytrace=False)


# ---- building ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> ModelUnderTest:
    return choose_model()


@pytest.fixture(scope="module")
def model_tag(builds: Builds, runtime_tag: str, model: ModelUnderTest) -> str:
    tag = f"ruth-ai/{model.config.model_id}:test-{RUN_ID}"
    build_sh("--wheelhouse", "wheelhouse", str(model.directory))
    try:
        builds.build(model.directory, tag, {"RUNTIME_VERSION": runtime_tag})
    except BuildError as exc:
        pytest.fail(f"{model.name} does not build:\n{build_failure(exc)}", pytrace=False)
    finally:
        shutil.rmtree(model.directory / ".wheelhouse", ignore_errors=True)
    return tag


# ---- running -------------------------------------------------------------------------------------


@dataclass
class Served:
    container: Container
    model: ModelUnderTest
    socket_dir: Path

    @property
    def socket(self) -> Path:
        return socket_path(self.model.config.model_id, str(self.socket_dir))


@pytest.fixture(scope="module")
def socket_dir() -> Iterator[Path]:
    """A socket directory handed to the container's group: root:10001, setgid, 2770."""
    if os.geteuid() != 0:
        unavailable("sharing the socket directory with the container's group needs root on the host")
    directory = Path(tempfile.mkdtemp(prefix="ruth-docker-", dir="/tmp"))
    os.chown(directory, -1, CONTAINER_GID)
    os.chmod(directory, 0o2770)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def served(engine: docker.DockerClient, model_tag: str, model: ModelUnderTest, socket_dir: Path) -> Iterator[Served]:
    container = engine.containers.run(
        model_tag, detach=True, name=f"ruth-test-{model.config.model_id}-{RUN_ID}", network_mode="none",
        volumes={str(socket_dir): {"bind": CONTAINER_SOCKET_DIR, "mode": "rw"},
                 "/dev/shm": {"bind": "/dev/shm", "mode": "ro"}},
    )
    try:
        served = Served(container, model, socket_dir)
        wait_ready(served)
        yield served
    finally:
        container.remove(force=True)


def wait_ready(served: Served) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        served.container.reload()
        if served.container.status == "exited":
            pytest.fail(f"the model container exited:\n{served.container.logs().decode()[-4000:]}", pytrace=False)
        try:
            with ModelClient(served.socket, connect_timeout_s=0.5) as client:
                if client.health().ready:
                    return
        except ClientError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"not READY after {READY_TIMEOUT_S}s:\n{served.container.logs().decode()[-4000:]}",
                        pytrace=False)
        time.sleep(0.5)


@pytest.fixture
def ask(served: Served) -> Iterator[Ask]:
    """Publish a BGR image into a fresh ring readable by the container's group, and request inference on it."""
    writers: list[FrameWriter] = []

    def ask(image: np.ndarray) -> InferenceResponse:
        height, width = image.shape[0] & ~1, image.shape[1] & ~1
        writer = FrameWriter(f"dock_{uuid.uuid4().hex[:8]}", width, height, 4, mode=0o640)
        writers.append(writer)
        os.chown("/dev/shm" + segment_name(writer.camera_id), -1, CONTAINER_GID)
        frame_id = writer.write_bgr(np.ascontiguousarray(image[:height, :width]))
        request = inference_request(served.model.config.model_id, writer.camera_id, frame_id, width, height)
        with ModelClient(served.socket) as client:
            return client.infer(request)

    yield ask
    for writer in writers:
        writer.close()


def run_in_image(engine: docker.DockerClient, tag: str, *command: str) -> str:
    output = engine.containers.run(tag, entrypoint=list(command), network_mode="none", remove=True)
    return output.decode().strip()


def health_as(served: Served, uid: int, gid: int) -> int:
    """Ask for health from a forked host process running as uid:gid, what a VAS or Core process would be.

    Exit status: 0 READY, 1 answered but not READY, 3 refused (ModelUnavailable), 4 anything else.
    A fork, because this interpreter lives where other users may not execute it.
    """
    pid = os.fork()
    if pid == 0:
        code = 4
        try:
            os.setgroups([])
            os.setgid(gid)
            os.setuid(uid)
            with ModelClient(served.socket) as client:
                code = 0 if client.health().ready else 1
        except ModelUnavailable:
            code = 3
        finally:
            os._exit(code)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


# ---- the tests -----------------------------------------------------------------------------------


def test_the_base_image_ships_the_runtime_as_a_wheel_and_no_torch(engine: docker.DockerClient, runtime_tag: str) -> None:
    tag = f"ruth-ai/model-runtime:{runtime_tag}"
    probe = (
        "import importlib.metadata as m, importlib.util as u, ai_model_container as a, cv2, numpy, yaml, pydantic, "
        "click; print(m.version('ruth-ai-model-runtime'), a.__file__, cv2.__version__, "
        "all(u.find_spec(name) is None for name in ('torch', 'ruth_ai_core', 'ruth_model_tools')))"
    )
    version, module_file, cv2_version, nothing_else = run_in_image(engine, tag, "python", "-c", probe).split()
    assert version == ai_model_container.__version__
    assert module_file.startswith("/opt/venv/lib/") and "/site-packages/" in module_file
    assert cv2_version.startswith("4.") and nothing_else == "True", "no torch, Core or developer tools in the base"
    commands = run_in_image(engine, tag, "ruth-model", "--help")
    assert "serve-all" in commands and "write-frames" not in commands
    config = engine.images.get(tag).attrs["Config"]
    assert config["User"] == "ruth:ruth" and not config.get("ExposedPorts")
    assert config["Healthcheck"]["Test"] == ["CMD", "ruth-serve", "--health"]
    assert config["Labels"]["org.opencontainers.image.version"] == ai_model_container.__version__


def test_the_model_container_answers_with_real_detections(served: Served, ask: Ask) -> None:
    served.model.check(ask)


def test_the_daemon_runs_unprivileged_and_its_socket_is_group_only(served: Served) -> None:
    exit_code, output = served.container.exec_run(["id", "-u"])
    assert exit_code == 0 and output.decode().strip() == str(CONTAINER_UID)
    status = served.socket.stat()
    assert stat.S_ISSOCK(status.st_mode) and stat.S_IMODE(status.st_mode) == 0o660
    assert (status.st_uid, status.st_gid) == (CONTAINER_UID, CONTAINER_GID)  # the setgid directory's group


def test_a_host_process_in_the_group_connects_and_others_are_refused(served: Served) -> None:
    assert health_as(served, uid=20001, gid=CONTAINER_GID) == 0
    assert health_as(served, uid=20002, gid=20002) == 3


def test_the_image_healthcheck_turns_healthy(served: Served) -> None:
    deadline = time.monotonic() + HEALTHY_TIMEOUT_S
    while True:
        served.container.reload()
        health = served.container.attrs["State"]["Health"]
        if health["Status"] == "healthy":
            break
        assert time.monotonic() < deadline, f"health {health['Status']} after {HEALTHY_TIMEOUT_S}s: {health['Log']}"
        time.sleep(1)
    assert health["Log"][-1]["ExitCode"] == 0 and '"READY"' in health["Log"][-1]["Output"]


def test_sigterm_drains_and_removes_the_socket(served: Served) -> None:
    """Last in this module: it stops the shared container."""
    served.container.stop(timeout=30)  # SIGTERM, SIGKILL only after 30 s
    result = served.container.wait(timeout=60)
    logs = served.container.logs().decode()
    assert result["StatusCode"] == 0, logs[-4000:]
    assert "received SIGTERM" in logs and "stopped" in logs
    assert not served.socket.exists(), "the daemon left its socket behind"
    assert list(served.socket_dir.iterdir()) == []


def test_the_demo_runs_the_model_image_and_ctrl_c_removes_its_containers(
        engine: docker.DockerClient, model: ModelUnderTest, model_tag: str, tmp_path: Path) -> None:
    """The demo's --docker mode on the image this module built: events flow, Ctrl-C leaves nothing."""
    model_id, image_tag = model.config.model_id, model_tag.split(":", 1)[1]
    log_path = tmp_path / "demo.log"
    tag = None
    with log_path.open("w") as log:
        demo = subprocess.Popen([sys.executable, str(DEMO), "--docker", "--model", model_id, "--image-tag", image_tag,
                                 "--duration", "120", "--cameras", "2", "--source", "synthetic", "--no-install",
                                 "--output", str(tmp_path / "out")], stdout=log, stderr=subprocess.STDOUT)
        try:
            run_dir, tag = wait_for(lambda: run_dir_and_tag(log_path), timeout_s=30, message="run directory")
            (container,) = wait_for(lambda: demo_containers(engine, tag), timeout_s=30, message="model container")
            assert container.image.tags and f"ruth-ai/{model_id}:" in container.image.tags[0]
            events = wait_for(lambda: list((tmp_path / "out").glob("*/events.jsonl")), timeout_s=120,
                              message="events flowing")
            wait_for(lambda: events[0].read_text().count("\n") >= 5, timeout_s=60, message="five events")
            assert (run_dir / f"vas_model_{model_id}.sock").exists()
            demo.send_signal(signal.SIGINT)
            code = demo.wait(60)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
            for leftover in demo_containers(engine, tag) if tag else []:
                leftover.remove(force=True)
    text = log_path.read_text()
    assert code == 130, text[-3000:]
    assert "clean: no demo process" in text and "removed leftovers" not in text, text[-3000:]
    assert demo_containers(engine, tag) == [], "a model container outlived the demo"
    assert_nothing_left(run_dir, tag)
    ok_events = [line for line in events[0].read_text().splitlines() if '"error_code":null' in line]
    assert len(ok_events) >= 5


def demo_containers(engine, tag):
    """Containers of the demo run ``tag`` (the demo names them ruth-demo-<tag>-<model_id> and labels them)."""
    return [c for c in engine.containers.list(all=True, filters={"label": "ruth-ai.demo"})
            if c.name.startswith(f"ruth-demo-{tag}-")]


def test_a_model_whose_weights_do_not_match_fails_its_build(
    builds: Builds, runtime_tag: str, model: ModelUnderTest, tmp_path: Path,
) -> None:
    broken = tmp_path / model.name
    shutil.copytree(model.directory, broken, ignore=shutil.ignore_patterns(".wheelhouse", "__pycache__"))
    with (broken / model.config.weights[0].path).open("ab") as weights:
        weights.write(b"\0")
    with pytest.raises(BuildError) as failure:
        builds.build(broken, f"ruth-ai/broken-{model.config.model_id}:test-{RUN_ID}", {"RUNTIME_VERSION": runtime_tag})
    assert "refusing to start" in build_failure(failure.value)
