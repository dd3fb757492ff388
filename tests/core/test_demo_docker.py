"""The demo's --docker mode against a real engine: model images as containers, stopped with SIGTERM on Ctrl-C.

Cheap on purpose: one model image that is already built (the template's, or
fall-detection's), two synthetic cameras, a few seconds of events. Without an
engine the tests skip, unless RUTH_REQUIRE_DOCKER=1 (CI), where they fail.
"""

import os
import signal
import subprocess
import sys

import pytest

from .helpers import wait_for
from .test_demo import DEMO, assert_nothing_left, run_dir_and_tag

pytestmark = pytest.mark.docker

REQUIRE_ENV = "RUTH_REQUIRE_DOCKER"
CANDIDATES = ("template", "fall-detection")  # (model_id): images of models/_template and models/fall-detection


def unavailable(reason):
    if os.environ.get(REQUIRE_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({REQUIRE_ENV} is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def engine():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        unavailable(f"no Docker engine: {exc}")
    return client


@pytest.fixture(scope="module")
def built_image(engine):
    """(model_id, tag) of a model image already on the engine: ':latest' first, then any tag (the docker suite's)."""
    for model_id in CANDIDATES:
        tags = [tag.split(":", 1)[1] for image in engine.images.list(name=f"ruth-ai/{model_id}") for tag in image.tags]
        if tags:
            return model_id, ("latest" if "latest" in tags else sorted(tags)[0])
    unavailable("no model image built: ./build.sh base && ./build.sh model models/_template")


def demo_containers(engine, tag):
    """Containers of the demo run ``tag`` (the demo names them ruth-demo-<tag>-<model_id> and labels them)."""
    return [c for c in engine.containers.list(all=True, filters={"label": "ruth-ai.demo"})
            if c.name.startswith(f"ruth-demo-{tag}-")]


def test_missing_images_name_the_build_command_and_exit_non_zero(engine, tmp_path):
    result = subprocess.run([sys.executable, str(DEMO), "--docker", "--image-tag", "no-such-tag-x9",
                             "--model", "template", "--output", str(tmp_path), "--no-install"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ruth-ai/template:no-such-tag-x9" in result.stderr
    assert "./build.sh model models/_template" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing is started (or written) without the images"


def test_docker_demo_serves_from_containers_and_ctrl_c_removes_them(engine, built_image, tmp_path):
    model_id, image_tag = built_image
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
