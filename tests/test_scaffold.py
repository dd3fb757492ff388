"""``ruth-model new`` renders models/_template into a model that passes its own smoke test.

So the template cannot rot: CI renders it and runs what a new engineer would get.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ai_model_container.contract.model_config import load_model_config, verify_weights

TEMPLATE = Path(__file__).resolve().parents[1] / "models" / "_template"


def ruth_model(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ai_model_container.daemon.cli", *arguments], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


def test_a_rendered_model_is_valid_and_passes_its_smoke_test(tmp_path):
    result = ruth_model("new", "demo-model", "--dest", str(tmp_path))
    assert result.returncode == 0, result.stderr
    model = tmp_path / "demo-model"
    config = load_model_config(model / "model.yaml")
    assert config.model_id == "demo-model" and config.model_name == "demo-model"
    verify_weights(config, model)
    assert "ruth-ai/demo-model" in (model / "Dockerfile").read_text()
    assert [path.name for path in (model / "tests").glob("test_*.py")] == ["test_demo_model_smoke.py"]
    assert not list(model.rglob("__pycache__"))

    tests = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(model / "tests")],
                           cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "5 passed" in tests.stdout


def test_the_template_weights_are_what_make_weights_builds():
    pytest.importorskip("onnx")
    result = subprocess.run([sys.executable, str(TEMPLATE / "make_weights.py"), "--check"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("model_id", ["has space", "x" * 65, "dots.not.allowed", ""])
def test_an_invalid_model_id_is_refused(tmp_path, model_id):
    result = ruth_model("new", model_id, "--dest", str(tmp_path))
    assert result.returncode == 2
    assert "cannot create" in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_existing_directory_is_never_overwritten(tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    result = ruth_model("new", "taken", "--dest", str(tmp_path))
    assert result.returncode == 2 and "already exists" in result.stderr
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


def test_a_missing_template_is_reported(tmp_path):
    empty = tmp_path / "no-template"
    empty.mkdir()
    result = ruth_model("new", "demo", "--dest", str(tmp_path), env={"RUTH_MODEL_TEMPLATE": str(empty)})
    assert result.returncode == 2 and "no model template" in result.stderr
    assert not (tmp_path / "demo").exists()
