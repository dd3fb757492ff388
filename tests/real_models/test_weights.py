"""Every shipped model refuses to start on a changed weight byte or a model.yaml its handler cannot use.

And, for the shipped files, the weights match the sha256 in model.yaml.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit import unique_id

from ai_model_container.contract.model_config import load_model_config, verify_weights

from .model_photos import MODELS

SHIPPED = sorted(path.parent for path in MODELS.glob("*/model.yaml"))


def copy_model(model_dir: Path, destination: Path) -> Path:
    return Path(shutil.copytree(model_dir, destination / model_dir.name,
                                ignore=shutil.ignore_patterns("__pycache__", ".wheelhouse")))


def serve_once(model_dir: Path, socket_dir: Path) -> subprocess.CompletedProcess:
    """``ruth-model serve`` on a model that must refuse to start; its socket must never appear."""
    model_id = unique_id("refused")
    result = subprocess.run(
        [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(model_dir), "--socket-dir", str(socket_dir),
         "--model-id", model_id], capture_output=True, text=True, timeout=60,
    )
    assert not (socket_dir / f"vas_model_{model_id}.sock").exists()
    return result


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
    copy = copy_model(model_dir, tmp_path)
    weights = copy / load_model_config(copy / "model.yaml").weights[-1].path
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    result = serve_once(copy, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "sha256" in result.stderr and "refusing to start" in result.stderr


@pytest.mark.parametrize("name, change, message", [
    ("fall-detection", {"output_schema": {"classes": ["person"]}}, "fall and no_fall"),
    ("face-detection", {"output_schema": {"classes": ["face"]}}, "5 MTCNN landmarks"),
])
def test_a_model_yaml_the_handler_cannot_use_refuses_to_start(name, change, message, tmp_path):
    copy = copy_model(MODELS / name, tmp_path)
    config = yaml.safe_load((copy / "model.yaml").read_text())
    (copy / "model.yaml").write_text(yaml.safe_dump({**config, **change}))
    result = serve_once(copy, tmp_path)
    assert result.returncode == 2, result.stderr
    assert "loading the model failed" in result.stderr and message in result.stderr
