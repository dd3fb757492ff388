"""The labelled image sets the models are evaluated on, built from files available offline.

Labels live in ``labels/`` (small JSON files, hand-made; see README.md there).
Pixels come from Debian packages (``opencv-doc``, ``labelme-examples``), the
photos committed under ``tests/real_models/photos`` and scikit-image's LFW
subset; nothing is downloaded. A set whose files are missing is reported as
such (``SetUnavailable``) rather than silently shrinking.

People sets (fall-detection): ``vtest-street``, ``indoor-photos``,
``lying-standin``. Face sets (face-detection): ``face-photos``,
``lfw-faces``, ``lfw-nonfaces``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import cv2
import numpy as np

EVAL = Path(__file__).resolve().parent
LABELS = EVAL / "labels"
REPO = EVAL.parents[1]
PHOTOS = REPO / "tests" / "real_models" / "photos"
VTEST = Path("/usr/share/doc/opencv-doc/examples/data/vtest.avi")
FACE_CANVAS = (1280, 720)  # width, height: the face goal is per 1280x720 frame
MIN_HEIGHT = 50.0  # people shorter than this (pixels) are ignored, as in the Caltech benchmark's 'reasonable' set

Box = tuple[float, float, float, float]


class SetUnavailable(Exception):
    """The files a set is built from are not on this machine (which Debian package to install is in the message)."""


@dataclass
class Sample:
    name: str
    image: np.ndarray
    """BGR, even width and height (NV12 needs them)."""
    boxes: list[Box]
    """Ground truth that counts for recall."""
    ignore: list[Box] = field(default_factory=list)
    """Ground truth that may be found or not: matching it is neither a hit nor a false alarm."""


@dataclass
class ImageSet:
    name: str
    description: str
    samples: list[Sample]
    min_height: float = 0.0
    """Ground truth shorter than this counts as ignore; unmatched detections shorter than this are not false alarms."""


def _even(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:image.shape[0] & ~1, :image.shape[1] & ~1])


def _need(path: Path, package: Optional[str]) -> Path:
    if not path.is_file():
        hint = f" (install the Debian package {package})" if package else ""
        raise SetUnavailable(f"{path} is missing{hint}")
    return path


def _read(path: Path, package: Optional[str] = None) -> np.ndarray:
    image = cv2.imread(str(_need(path, package)))
    if image is None:
        raise SetUnavailable(f"{path} is not a readable image")
    return image


def _photo_path(entry: dict) -> Path:
    name = entry["file"]
    return PHOTOS / name[len("photos/"):] if name.startswith("photos/") else Path(name)


def labelme_people(path: Path) -> list[Box]:
    """The ``person`` rectangles of a labelme JSON file."""
    shapes = json.loads(path.read_text())["shapes"]
    boxes = []
    for shape in shapes:
        if shape["label"] == "person" and shape["shape_type"] == "rectangle":
            (x1, y1), (x2, y2) = shape["points"]
            boxes.append((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)))
    return boxes


def _photo_entries() -> list[dict]:
    return json.loads((LABELS / "photos.json").read_text())["images"]


def _photo_people() -> Iterator[tuple[str, np.ndarray, list[Box]]]:
    for entry in _photo_entries():
        path = _photo_path(entry)
        if entry.get("labelme_people"):
            boxes = labelme_people(_need(path.with_suffix(".json"), entry.get("debian_package")))
        elif "people" in entry:
            boxes = [tuple(map(float, box)) for box in entry["people"]]
        else:
            continue
        yield path.name, _read(path, entry.get("debian_package")), boxes


def vtest_frames(indices: Optional[Sequence[int]] = None) -> Iterator[tuple[int, np.ndarray]]:
    """Frames of vtest.avi (all, or those indices), decoded in order from the Debian file."""
    capture = cv2.VideoCapture(str(_need(VTEST, "opencv-doc")))
    wanted = None if indices is None else set(indices)
    index = 0
    try:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if wanted is None or index in wanted:
                yield index, frame
            index += 1
    finally:
        capture.release()


def vtest_street(limit: Optional[int] = None) -> ImageSet:
    labels = json.loads((LABELS / "vtest_people.json").read_text())
    frames = labels["frames"] if limit is None else labels["frames"][::max(1, len(labels["frames"]) // limit)][:limit]
    by_index = {frame["index"]: frame["people"] for frame in frames}
    samples = []
    for index, image in vtest_frames(sorted(by_index)):
        people = by_index[index]
        samples.append(Sample(f"vtest#{index}", _even(image),
                              [tuple(p["box"]) for p in people if "ignore" not in p],
                              [tuple(p["box"]) for p in people if "ignore" in p]))
    if len(samples) != len(by_index):
        raise SetUnavailable(f"{VTEST} has fewer frames than labelled")
    return ImageSet("vtest-street", "vtest.avi street camera, hand-labelled frames", samples, labels["min_height"])


def indoor_photos() -> ImageSet:
    samples = [Sample(name, _even(image), boxes) for name, image, boxes in _photo_people()]
    return ImageSet("indoor-photos", "real photos of people indoors and close up (labelme VOC, opencv, skimage)",
                    samples, MIN_HEIGHT)


def rotate_box(box: Box, width: int, height: int, clockwise: bool) -> Box:
    """A box in an image of width x height, after the image turns by 90 degrees."""
    x1, y1, x2, y2 = box
    if clockwise:  # (x, y) -> (height - y, x)
        return (height - y2, x1, height - y1, x2)
    return (y1, width - x2, y2, width - x1)  # (x, y) -> (y, width - x)


def lying_standin() -> ImageSet:
    """STAND-IN for people lying down: the indoor photos turned by 90 degrees both ways (no real footage offline)."""
    samples = []
    for name, image, boxes in _photo_people():
        height, width = image.shape[:2]
        for clockwise, code in ((True, cv2.ROTATE_90_CLOCKWISE), (False, cv2.ROTATE_90_COUNTERCLOCKWISE)):
            # The upright photo's people under MIN_HEIGHT stay ignored once turned (their width is their height now).
            turned = [rotate_box(box, width, height, clockwise) for box in boxes if box[3] - box[1] >= MIN_HEIGHT]
            small = [rotate_box(box, width, height, clockwise) for box in boxes if box[3] - box[1] < MIN_HEIGHT]
            samples.append(Sample(f"{name}@{'cw' if clockwise else 'ccw'}", _even(cv2.rotate(image, code)),
                                  turned, small))
    return ImageSet("lying-standin", "STAND-IN for lying people: the indoor photos rotated by 90 degrees", samples)


def _on_canvas(image: np.ndarray, boxes: list[Box]) -> tuple[np.ndarray, list[Box]]:
    """The image pasted unscaled in the middle of a black 1280x720 frame (faces keep their size)."""
    width, height = FACE_CANVAS
    canvas = np.zeros((height, width, 3), np.uint8)
    image = image[:height, :width]
    x0, y0 = (width - image.shape[1]) // 2, (height - image.shape[0]) // 2
    canvas[y0:y0 + image.shape[0], x0:x0 + image.shape[1]] = image
    return canvas, [(b[0] + x0, b[1] + y0, b[2] + x0, b[3] + y0) for b in boxes]


def face_photos() -> ImageSet:
    samples = []
    for entry in _photo_entries():
        path = _photo_path(entry)
        faces = [tuple(map(float, box)) for box in entry["faces"]]
        ignore = [tuple(map(float, box)) for box in entry.get("ignore_faces", [])]
        canvas, boxes = _on_canvas(_read(path, entry.get("debian_package")), faces + ignore)
        samples.append(Sample(path.name, canvas, boxes[:len(faces)], boxes[len(faces):]))
    return ImageSet("face-photos", "real photos with faces, each unscaled on a 1280x720 frame", samples)


LFW_FACE_SIDE = 96
LFW_CELL = (128, 144)  # width, height of one grid cell on the canvas


def _lfw_crops() -> np.ndarray:
    try:
        from skimage.data import lfw_subset
    except ImportError as error:
        raise SetUnavailable("scikit-image is not installed (pip install scikit-image)") from error
    return lfw_subset()  # (200, 25, 25) float 0..1: 100 faces, then 100 non-faces


def _lfw_canvases(crops: np.ndarray, label: str, faces: bool) -> list[Sample]:
    width, height = FACE_CANVAS
    columns, rows = width // LFW_CELL[0], height // LFW_CELL[1]
    per_canvas = columns * rows
    samples = []
    for start in range(0, len(crops), per_canvas):
        canvas = np.full((height, width, 3), 96, np.uint8)
        boxes = []
        for offset, crop in enumerate(crops[start:start + per_canvas]):
            row, column = divmod(offset, columns)
            x0 = column * LFW_CELL[0] + (LFW_CELL[0] - LFW_FACE_SIDE) // 2
            y0 = row * LFW_CELL[1] + (LFW_CELL[1] - LFW_FACE_SIDE) // 2
            grey = cv2.resize((crop * 255).astype(np.uint8), (LFW_FACE_SIDE, LFW_FACE_SIDE),
                              interpolation=cv2.INTER_CUBIC)
            canvas[y0:y0 + LFW_FACE_SIDE, x0:x0 + LFW_FACE_SIDE] = grey[..., None]
            boxes.append((x0, y0, x0 + LFW_FACE_SIDE, y0 + LFW_FACE_SIDE))
        samples.append(Sample(f"{label}[{start}:{start + per_canvas}]", canvas, boxes if faces else []))
    return samples


def lfw_faces() -> ImageSet:
    return ImageSet("lfw-faces", "scikit-image's LFW subset: 100 face crops scaled to 96 px, 50 per 1280x720 frame",
                    _lfw_canvases(_lfw_crops()[:100], "lfw-faces", True))


def lfw_nonfaces() -> ImageSet:
    return ImageSet("lfw-nonfaces", "scikit-image's LFW subset: its 100 non-face crops (every box is a false alarm)",
                    _lfw_canvases(_lfw_crops()[100:], "lfw-nonfaces", False))


PEOPLE_SETS: dict[str, Callable[[], ImageSet]] = {
    "vtest-street": vtest_street, "indoor-photos": indoor_photos, "lying-standin": lying_standin,
}
FACE_SETS: dict[str, Callable[[], ImageSet]] = {
    "face-photos": face_photos, "lfw-faces": lfw_faces, "lfw-nonfaces": lfw_nonfaces,
}
