"""``write-frames --source DIR --hold N``: a directory of images as a slideshow, each image for N frames."""

from __future__ import annotations

import itertools
import json
import uuid
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from ai_model_container.daemon.cli import main
from ruth_model_tools.frame_writer import frames_from_source


def slides(directory: Path, count: int = 3) -> list[int]:
    """``count`` flat grey images named in the order they play; returns their grey levels."""
    levels = [40 + 60 * index for index in range(count)]
    for index, level in enumerate(levels):
        cv2.imwrite(str(directory / f"{index:02d}.png"), np.full((48, 64, 3), level, np.uint8))
    return levels


def played(frames, count: int) -> list[int]:
    return [int(frame[0, 0, 0]) for frame in itertools.islice(frames, count)]


def test_each_image_stays_on_for_hold_frames_then_the_next_in_name_order(tmp_path: Path) -> None:
    a, b, c = slides(tmp_path)
    assert played(frames_from_source(str(tmp_path), 64, 48, hold=3), 11) == [a, a, a, b, b, b, c, c, c, a, a]


def test_hold_one_is_a_new_image_every_frame(tmp_path: Path) -> None:
    a, b, c = slides(tmp_path)
    assert played(frames_from_source(str(tmp_path), 64, 48), 4) == [a, b, c, a]


def test_hold_below_one_is_refused(tmp_path: Path) -> None:
    slides(tmp_path)
    with pytest.raises(ValueError, match="at least 1"):
        next(frames_from_source(str(tmp_path), 64, 48, hold=0))


def test_the_command_plays_a_held_slideshow_and_refuses_hold_on_a_video_or_synthetic(tmp_path: Path) -> None:
    slides(tmp_path)
    runner = CliRunner()
    result = runner.invoke(main, ["write-frames", "--camera", f"slides-{uuid.uuid4().hex[:8]}", "--source", str(tmp_path),
                                  "--hold", "4", "--fps", "40", "--duration", "0.3"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "each image for 4 frames" in result.output
    (written,) = json.loads(result.output.strip().splitlines()[-1]).values()
    assert written >= 4
    refused = runner.invoke(main, ["write-frames", "--camera", "never", "--source", "synthetic", "--hold", "2"])
    assert refused.exit_code == 2 and "only a directory of images" in refused.output
