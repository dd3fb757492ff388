"""Building images in the docker suite: air-gapped, under test tags, everything removed afterwards.

Images are built the way build.sh --air-gapped builds them (wheelhouses filled by build.sh with the
host's pip, OFFLINE=1, no network in the build), with the Docker SDK so each test module can tag
and remove its own images without touching a developer's.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from pathlib import Path
from typing import Iterable

import docker
from docker.errors import APIError, BuildError, ImageNotFound

REPO = Path(__file__).resolve().parents[2]
BUILD_SH = REPO / "build.sh"
BASE_CONTEXT = REPO / "runtime-base-image"
LOCAL_BASE_IMAGE = os.environ.get("RUTH_TEST_BASE_IMAGE", "local/debian-python:bookworm")
RUN_ID = uuid.uuid4().hex[:8]


class Builds:
    """Images built by this module, removed at the end with the intermediate images they left."""

    def __init__(self, client: docker.DockerClient) -> None:
        self.client = client
        self.tags: list[str] = []
        self.step_ids: list[str] = []

    def build(self, context: Path, tag: str, buildargs: dict[str, str]) -> docker.models.images.Image:
        """Build air-gapped (no network, OFFLINE=1) with the Docker SDK; a failure shows the build's log."""
        self.tags.append(tag)
        try:
            image, log = self.client.images.build(
                path=str(context), tag=tag, buildargs={**buildargs, "OFFLINE": "1"},
                network_mode="none", rm=True, forcerm=True, pull=False,
            )
        except BuildError as exc:
            entries = list(exc.build_log)  # an iterator the SDK hands out once
            self._remember(entries)
            raise BuildError(exc.msg, entries) from None
        self._remember(log)
        return image

    def _remember(self, log: Iterable[dict]) -> None:
        for entry in log:
            match = re.match(r"^ ---> ([0-9a-f]{12})$", entry.get("stream", "").strip("\n"))
            if match:
                self.step_ids.append(match.group(1))

    def remove_all(self) -> None:
        for tag in self.tags:
            try:
                self.client.images.remove(tag, force=True)
            except ImageNotFound:
                pass
        # Untagged leftovers only (the install stages); tagged ones (the local base, a developer's
        # images sharing the cache) and images with children are never touched.
        for image_id in reversed(self.step_ids):
            try:
                if not self.client.images.get(image_id).tags:
                    self.client.images.remove(image_id)
            except (ImageNotFound, APIError):
                pass


def build_sh(*args: str) -> None:
    result = subprocess.run([str(BUILD_SH), *args], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, f"build.sh {' '.join(args)} failed:\n{result.stderr[-4000:]}"


def build_failure(exc: BuildError) -> str:
    lines = [entry.get("stream", "") or entry.get("error", "") for entry in exc.build_log]
    return "".join(lines)[-4000:]
