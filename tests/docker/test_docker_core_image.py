"""The Ruth AI Core image builds air-gapped on the suite's base image and runs `ruth-ai` as Kubernetes runs it.

Kept cheap on purpose (the base image is the session's, built once for the whole suite): one
build of core-image/ the way build.sh --air-gapped core does it, then the two commands the
manifests start, with --help, in containers locked down as deploy/kubernetes runs them (uid 10001,
read-only root, no capabilities, no network). What the commands do is the rest of the suite's job.
"""

from __future__ import annotations

import shutil

import docker
import pytest
from docker.errors import BuildError
from docker_images import REPO, RUN_ID, Builds, build_failure, build_sh

import ruth_ai_core

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CORE_CONTEXT = REPO / "core-image"


@pytest.fixture(scope="module")
def core_tag(builds: Builds, runtime_tag: str) -> str:
    tag = f"ruth-ai/core:test-{RUN_ID}"
    build_sh("--wheelhouse", "wheelhouse", "core")
    try:
        builds.build(CORE_CONTEXT, tag, {"RUNTIME_VERSION": runtime_tag, "CORE_VERSION": ruth_ai_core.__version__})
    except BuildError as exc:
        pytest.fail(f"the core image does not build:\n{build_failure(exc)}", pytrace=False)
    finally:
        shutil.rmtree(CORE_CONTEXT / ".wheelhouse", ignore_errors=True)
    return tag


def ruth_ai(engine: docker.DockerClient, tag: str, *arguments: str) -> str:
    """`ruth-ai ARGUMENTS` through the image's entry point, under the manifests' security context."""
    output = engine.containers.run(
        tag, command=list(arguments), user="10001:10001", read_only=True, cap_drop=["ALL"],
        security_opt=["no-new-privileges"], network_mode="none", remove=True,
    )
    return output.decode()


def test_the_core_image_runs_ruth_ai_and_its_api_command(engine: docker.DockerClient, core_tag: str) -> None:
    usage = ruth_ai(engine, core_tag, "--help")
    assert "Usage: ruth-ai [OPTIONS] COMMAND [ARGS]..." in usage
    assert all(f"  {command} " in usage for command in ("run", "api", "db")), usage
    api_usage = ruth_ai(engine, core_tag, "api", "--help")
    assert "--listen HOST:PORT" in api_usage, api_usage
