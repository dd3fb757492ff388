"""Where the real models and the test photos are, and how a test loads a photo."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"
PHOTOS = Path(__file__).resolve().parent / "photos"


def photo(name: str, rotate: Optional[int] = None) -> np.ndarray:
    """A test photo as BGR; ``rotate`` is a cv2.ROTATE_* code (the stand-in for a lying person)."""
    image = cv2.imread(str(PHOTOS / name))
    assert image is not None, name
    return image if rotate is None else cv2.rotate(image, rotate)
