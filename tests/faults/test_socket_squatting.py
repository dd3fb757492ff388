"""Issue 7, item 6: another user binds ``vas_model_<id>.sock`` first in a world-writable directory.

The squatter is a real process running as ``nobody`` (fake_daemon), answering health READY and every
inference with a forged detection. Clients (``ruth-model``, ModelClient, Ruth AI Core's router) must
refuse it from its peer credentials and say why, Core must show the model unhealthy with that reason
and carry on, and the real daemon must say which user holds its path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest
import yaml
from testkit import EXAMPLE_MODEL_DIR, launch_daemon, unique_id

from ai_model_container.contract.client import ModelClient, UntrustedDaemon
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.peer import DAEMON_UIDS_ENV
from ruth_ai_core.registry import ModelRegistry
from ruth_model_tools.frame_writer import synthetic_scene

from .fake_daemon import FORGED_CLASS, start_fake_daemon
from .helpers import NOBODY_GID, NOBODY_UID, wait_for, write_assignments

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="running a squatter as another user needs root")

OTHER_GID = 4242


def _directory(mode: int, gid: int = 0) -> Path:
    directory = Path(tempfile.mkdtemp(prefix="ruth-sq-", dir="/tmp"))
    os.chown(directory, 0, gid)
    os.chmod(directory, mode)
    return directory


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory like /tmp: root's, world-writable, sticky."""
    directory = _directory(0o1777)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def squatter() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start fake daemons as another user; killed at teardown."""
    processes: list[subprocess.Popen] = []

    def start(socket: Path, model_id: str, uid: int = NOBODY_UID, gid: int = NOBODY_GID,
              groups: Sequence[int] = ()) -> subprocess.Popen:
        process = start_fake_daemon(socket, model_id, uid, gid, groups)
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.kill()
        process.wait()


def ruth_model(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ai_model_container.daemon.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_clients_refuse_a_squatter_and_say_who_it_is(shared_dir, squatter, make_writer, camera_id, model_id):
    writer = make_writer(camera_id, 320, 240)
    writer.write_bgr(synthetic_scene(1, 320, 240)[0])
    sock = socket_path(model_id, str(shared_dir))
    squatter(sock, model_id)

    inferred = ruth_model("infer", model_id, "--camera", camera_id, "--socket-dir", str(shared_dir))
    assert inferred.returncode == 3, inferred.stdout + inferred.stderr
    assert FORGED_CLASS not in inferred.stdout
    assert f"refusing {sock}: it is served by uid {NOBODY_UID} (nobody)" in inferred.stderr
    assert DAEMON_UIDS_ENV in inferred.stderr and "Traceback" not in inferred.stderr
    assert ruth_model("health", model_id, "--socket-dir", str(shared_dir)).returncode == 3
    with pytest.raises(UntrustedDaemon, match="uid 65534"):
        with ModelClient(sock) as client:
            client.health()

    # The control: listed as trusted, the very same process is believed (so the refusal above is the check's).
    believed = ruth_model("infer", model_id, "--camera", camera_id, "--socket-dir", str(shared_dir),
                          env={DAEMON_UIDS_ENV: "nobody"})
    assert believed.returncode == 0 and FORGED_CLASS in believed.stdout, believed.stdout + believed.stderr


def test_the_real_daemon_says_which_user_holds_its_path(shared_dir, squatter, model_id):
    squatter(socket_path(model_id, str(shared_dir)), model_id)
    served = ruth_model("serve", str(EXAMPLE_MODEL_DIR), "--socket-dir", str(shared_dir), "--model-id", model_id)
    output = served.stdout + served.stderr
    assert served.returncode == 3, output
    assert f"is held by uid {NOBODY_UID} (nobody)" in output and "Socket directory" in output, output
    assert "Traceback" not in output


def test_core_shows_a_squatted_model_unhealthy_with_the_reason_and_recovers(shared_dir, squatter, feeder,
                                                                          core_process, registry_path, tmp_path,
                                                                          model_id):
    config = yaml.safe_load((EXAMPLE_MODEL_DIR / "model.yaml").read_text())
    (tmp_path / "model.yaml").write_text(yaml.safe_dump({**config, "model_id": model_id}))
    with ModelRegistry(registry_path) as registry:
        registry.import_model_yaml(tmp_path / "model.yaml")
    camera = unique_id("cam")
    feeder(camera).start()
    assignments = tmp_path / "assignments.yaml"
    write_assignments(assignments, [{"camera": camera, "model": model_id, "fps": 10}])
    fake = squatter(socket_path(model_id, str(shared_dir)), model_id)
    core = core_process(assignments, daemons_dir=shared_dir)

    def unhealthy() -> bool:
        samples = (core.metrics() or {}).get("ruth_ai_model_healthy", [])
        return any(labels.get("model") == model_id and value == 0 for labels, value in samples)

    wait_for(lambda: unhealthy() or not core.alive, message="the squatted model to show unhealthy")
    core.assert_serving()
    assert f"refusing {socket_path(model_id, str(shared_dir))}: it is served by uid {NOBODY_UID}" in core.log
    forged = [e for e in core.events(camera) if any(d["class_name"] == FORGED_CLASS for d in e["detections"])]
    assert forged == [], "Core believed the squatter"

    fake.kill()
    fake.wait()
    os.unlink(socket_path(model_id, str(shared_dir)))
    daemon = launch_daemon(EXAMPLE_MODEL_DIR, shared_dir, model_id=model_id)
    try:
        core.wait_for_more_results(camera, model_id)
    finally:
        daemon.stop()
    assert core.stop() == 0, core.log[-3000:]


@pytest.mark.parametrize("primary", [True, False], ids=["effective group", "supplementary group"])
def test_a_daemon_of_the_directorys_group_is_trusted_unless_an_allow_list_says_otherwise(squatter, model_id, primary):
    """The compose setup: a group-shared directory (root:group, 2770), daemons in that group."""
    directory = _directory(0o2770, OTHER_GID)
    try:
        sock = socket_path(model_id, str(directory))
        if primary:
            squatter(sock, model_id, uid=NOBODY_UID, gid=OTHER_GID)
        else:
            squatter(sock, model_id, uid=NOBODY_UID, gid=NOBODY_GID, groups=[OTHER_GID])
        with ModelClient(sock) as client:
            assert client.health().ready
        with pytest.raises(UntrustedDaemon, match=DAEMON_UIDS_ENV):
            with ModelClient(sock, daemon_uids=[12345]) as client:
                client.health()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
