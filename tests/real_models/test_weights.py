"""Every shipped model's weights match model.yaml, and a changed byte refuses to start the daemon."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from ai_model_container.model_config import load_model_config, verify_weights

from conftest import unique_id  # tests/conftest.py
from .model_photos import MODELS

SHIPPED = sorted(path.parent for path in MODELS.glob("*/model.yaml"))


def test_the_models_are_there():
    assert {path.name for path in SHIPPED} >= {"fall-detection", "face-detection", "_template"}


@pytest.mark.parametrize("model_dir", SHIPPED, ids=lambda path: path.name)
def test_weights_match_their_sha256(model_dir):
    config = load_model_config(model_dir / "model.yaml")
    assert config.weights, f"{model_dir.name} lists no weights"
    verify_weights(config, model_dir)
    assert config.license and config.source


@pytest.mark.parametrize("model_dir", SHIPPED, ids=lambda path: path.name)
def test_a_changed_weight_byte_refuses_to_start(model_dir, tmp_path):
    copy = tmp_path / model_dir.name
    shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns("__pycache__", "wheelhouse"))
    config = load_model_config(copy / "model.yaml")
    weights = copy / config.weights[-1].path
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    model_id = unique_id("weights")
    result = subprocess.run(
        [sys.executable, "-m", "ai_model_container.cli", "serve", str(copy), "--socket-dir", str(tmp_path),
         "--model-id", model_id], capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "sha256" in result.stderr and "refusing to start" in result.stderr
    assert not (tmp_path / f"vas_model_{model_id}.sock").exists()
