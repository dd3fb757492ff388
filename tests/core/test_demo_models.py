"""What the demo serves: the models DEMO_MODELS names, whatever else models/ holds; --model still picks.

A newcomer's first step is ``ruth-model new`` into models/; that must not turn the
demo into a demo of their half-written model.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Iterator

import pytest

SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"
sys.path.insert(0, str(SCRIPTS))
import demo  # noqa: E402  (scripts/ is not a package)

MODELS = demo.ROOT / "models"


@pytest.fixture
def new_model() -> Iterator[str]:
    """A model created in the repository's models/ the way a newcomer does it, removed afterwards."""
    model_id = f"zz-newcomer-{uuid.uuid4().hex[:6]}"
    result = subprocess.run([sys.executable, "-m", "ai_model_container.daemon.cli", "new", model_id,
                             "--dest", str(MODELS)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    try:
        yield model_id
    finally:
        shutil.rmtree(MODELS / model_id, ignore_errors=True)


def ids(chosen: list[tuple[str, Path]]) -> list[str]:
    return [model_id for model_id, _ in chosen]


def test_the_demo_serves_the_named_models_in_order() -> None:
    assert demo.DEMO_MODELS == ("fall-detection", "face-detection", "example")
    chosen = demo.choose_models(())
    assert ids(chosen) == ["fall-detection", "face-detection", "example"]
    assert dict(chosen)["fall-detection"] == MODELS / "fall-detection"
    assert dict(chosen)["example"] == demo.EXAMPLE_MODEL_DIR
    assert ids(demo.choose_models((), images=True)) == ["fall-detection", "face-detection"], "the example has no image"


def test_a_new_folder_in_models_does_not_change_what_the_demo_serves(new_model: str) -> None:
    assert (MODELS / new_model / "model.yaml").is_file()
    assert ids(demo.choose_models(())) == ["fall-detection", "face-detection", "example"]
    assert ids(demo.choose_models((), images=True)) == ["fall-detection", "face-detection"]


def test_model_still_picks_the_new_folder(new_model: str) -> None:
    assert demo.choose_models((new_model,)) == [(new_model, MODELS / new_model)]
    assert demo.choose_models((new_model, "example")) == [(new_model, MODELS / new_model),
                                                          ("example", demo.EXAMPLE_MODEL_DIR)]


def test_a_named_model_that_is_missing_is_left_out_with_the_reason(monkeypatch: pytest.MonkeyPatch,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "DEMO_MODELS", ("no-such-model", "example"))
    assert demo.choose_models(()) == [("example", demo.EXAMPLE_MODEL_DIR), ("example_b", demo.EXAMPLE_MODEL_DIR)]
    assert "model no-such-model: left out" in capsys.readouterr().err
