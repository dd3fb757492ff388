"""The docker suite's shared fixtures: the engine, and the base image built once per session.

Every image a model or Core builds FROM is this one base, so it is built once for the whole suite
(about 1.5 minutes on the development machine) and removed at the end with everything built on it.
"""

from __future__ import annotations

import shutil
from typing import Iterator

import docker
import pytest
from docker.errors import BuildError, ImageNotFound
from docker_engine import connect, unavailable
from docker_images import BASE_CONTEXT, LOCAL_BASE_IMAGE, RUN_ID, Builds, build_failure, build_sh

import ai_model_container


@pytest.fixture(scope="session")
def engine() -> docker.DockerClient:
    client = connect()
    try:
        client.images.get(LOCAL_BASE_IMAGE)
    except ImageNotFound:
        unavailable(f"base image {LOCAL_BASE_IMAGE} is missing: run ./build.sh local-base (as root)")
    return client


@pytest.fixture(scope="session")
def builds(engine: docker.DockerClient) -> Iterator[Builds]:
    builds = Builds(engine)
    yield builds
    builds.remove_all()


@pytest.fixture(scope="session")
def runtime_tag(builds: Builds) -> Iterator[str]:
    """The base image, built once per session under a tag of its own (model Dockerfiles take it as RUNTIME_VERSION)."""
    version = f"{ai_model_container.__version__}-test-{RUN_ID}"
    build_sh("--wheelhouse", "wheelhouse", "base")
    try:
        builds.build(BASE_CONTEXT, f"ruth-ai/model-runtime:{version}",
                     {"BASE_IMAGE": LOCAL_BASE_IMAGE, "RUNTIME_VERSION": ai_model_container.__version__})
    except BuildError as exc:
        pytest.fail(f"the base image does not build:\n{build_failure(exc)}", pytrace=False)
    finally:
        shutil.rmtree(BASE_CONTEXT / ".wheelhouse", ignore_errors=True)
    yield version
