"""The demo's --docker mode without its images: it names the build command and starts nothing.

The run against real containers is in test_docker_model_image.py, next to the
image build it uses.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from core.test_demo import DEMO  # tests/core: the demo's own tests
from docker_engine import connect

pytestmark = pytest.mark.docker


def test_missing_images_name_the_build_command_and_exit_non_zero(tmp_path: Path) -> None:
    connect()
    result = subprocess.run([sys.executable, str(DEMO), "--docker", "--image-tag", "no-such-tag-x9",
                             "--model", "template", "--output", str(tmp_path), "--no-install"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ruth-ai/template:no-such-tag-x9" in result.stderr
    assert "./build.sh model models/_template" in result.stderr
    assert not list(tmp_path.iterdir()), "nothing is started (or written) without the images"
