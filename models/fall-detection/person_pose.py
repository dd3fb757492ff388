"""People and their 17 COCO keypoints from MoveNet MultiPose, over several views of one frame.

MoveNet MultiPose Lightning, at its reference 256x256, misses people much
smaller than about a sixth of its input, and its decoder keeps at most six
people (the converted graph here keeps twelve: ``MAX_PEOPLE_PER_PASS``). A
street camera shows more, smaller people than that; a person lying on the
floor is turned by about 90 degrees from the upright people MoveNet learnt
from. So a frame is looked at through several ``View``s (``plan_views``):

- the whole frame upright at a higher resolution (small people, and close-ups),
- the whole frame turned by 90 degrees each way at a low one (a lying person
  stands upright there).

A view may also be a crop (tiles): two overlapping 256x352 tiles of a 768x576
frame found as many people as one 448x352 view, for more pixels, and lost the
lying ones; the handler does not use them. Each view is letterboxed into an
input of its own size; every person found is mapped back to frame pixels, and
the people several views found are merged (``merge_people``). Nothing here
knows about the daemon: ``detect_people`` takes an RGB array and a function
that runs MoveNet, and returns ``Person`` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

KEYPOINTS = 17
MAX_PEOPLE_PER_PASS = 12
ROW_SIZE = 56
"""One person's output: 17 x (y, x, score), then y_min, x_min, y_max, x_max, person score, all 0..1."""


@dataclass
class Person:
    box: tuple[float, float, float, float]
    """x_min, y_min, x_max, y_max in frame pixels."""
    score: float
    keypoints: np.ndarray
    """(17, 3) x, y in frame pixels and score 0..1."""
    view: int = 0
    """Index of the view that found this person."""
    rotation: int = 0
    """Rotation of that view, degrees clockwise (0 or 90 or 270)."""
    votes: int = 1
    """How many views found this person (after merging)."""


@dataclass(frozen=True)
class View:
    """A crop of the frame in fractions of its size, turned by ``rotation`` degrees clockwise, fitted into
    an input of ``input_width`` x ``input_height`` (multiples of 32; MoveNet takes any such size)."""

    x0: float
    y0: float
    x1: float
    y1: float
    input_width: int
    input_height: int
    rotation: int = 0

    def __post_init__(self) -> None:
        if self.rotation not in (0, 90, 270):
            raise ValueError("rotation must be 0, 90 or 270")
        if self.input_width % 32 or self.input_height % 32 or min(self.input_width, self.input_height) <= 0:
            raise ValueError("MoveNet inputs must be positive multiples of 32")
        if not (0 <= self.x0 < self.x1 <= 1 and 0 <= self.y0 < self.y1 <= 1):
            raise ValueError("a view is a crop inside the frame")

    @property
    def pixels(self) -> int:
        return self.input_width * self.input_height


@dataclass(frozen=True)
class Geometry:
    """How one view's input maps back to frame pixels."""

    crop_x: int
    crop_y: int
    crop_width: int
    crop_height: int
    scale: float
    """Input pixels per crop pixel (after rotation)."""
    pad_x: int
    pad_y: int
    rotation: int

    def to_frame(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Input pixel coordinates to frame pixel coordinates."""
        u = (x - self.pad_x) / self.scale  # in the rotated crop
        v = (y - self.pad_y) / self.scale
        if self.rotation == 90:  # rotated clockwise: crop (cx, cy) -> (H - cy, cx)
            cx, cy = v, self.crop_height - u
        elif self.rotation == 270:  # counter-clockwise: crop (cx, cy) -> (cy, W - cx)
            cx, cy = self.crop_width - v, u
        else:
            cx, cy = u, v
        return cx + self.crop_x, cy + self.crop_y


def prepare_view(rgb: np.ndarray, view: View, smaller: Optional[np.ndarray] = None) -> tuple[np.ndarray, Geometry]:
    """The view's uint8 input (H, W, 3) and its geometry.

    ``smaller`` may be the whole frame already scaled down (by more than this
    view needs): the crop is then resized from it, which is much cheaper than
    from the full frame and, with area averaging both times, looks the same.
    """
    height, width = rgb.shape[:2]
    x0, x1 = int(round(view.x0 * width)), int(round(view.x1 * width))
    y0, y1 = int(round(view.y0 * height)), int(round(view.y1 * height))
    crop_width, crop_height = x1 - x0, y1 - y0
    turned = view.rotation in (90, 270)
    rotated_width, rotated_height = (crop_height, crop_width) if turned else (crop_width, crop_height)
    scale = min(view.input_width / rotated_width, view.input_height / rotated_height)
    resized_width = min(view.input_width, max(1, round(rotated_width * scale)))
    resized_height = min(view.input_height, max(1, round(rotated_height * scale)))
    source, factor = rgb, 1.0
    if smaller is not None and smaller.shape[1] / width >= scale:
        source, factor = smaller, smaller.shape[1] / width
    crop = source[int(round(y0 * factor)):int(round(y1 * factor)), int(round(x0 * factor)):int(round(x1 * factor))]
    target = (resized_height, resized_width) if turned else (resized_width, resized_height)
    interpolation = cv2.INTER_AREA if target[0] < crop.shape[1] else cv2.INTER_LINEAR
    resized = cv2.resize(crop, target, interpolation=interpolation)
    if view.rotation == 90:
        resized = cv2.rotate(resized, cv2.ROTATE_90_CLOCKWISE)
    elif view.rotation == 270:
        resized = cv2.rotate(resized, cv2.ROTATE_90_COUNTERCLOCKWISE)
    pad_x, pad_y = (view.input_width - resized_width) // 2, (view.input_height - resized_height) // 2
    canvas = np.zeros((view.input_height, view.input_width, 3), np.uint8)
    canvas[pad_y:pad_y + resized_height, pad_x:pad_x + resized_width] = resized
    geometry = Geometry(x0, y0, crop_width, crop_height, resized_width / rotated_width, pad_x, pad_y, view.rotation)
    return canvas, geometry


def decode_people(rows: np.ndarray, geometry: Geometry, input_width: int, input_height: int,
                  min_score: float, view_index: int = 0) -> list[Person]:
    """MoveNet's (N, 56) rows as people in frame pixels, those scoring at least ``min_score``."""
    if rows.ndim != 2 or rows.shape[1] != ROW_SIZE:
        raise ValueError(f"expected MoveNet MultiPose rows of {ROW_SIZE} values, got shape {rows.shape}")
    people = []
    for row in rows[:MAX_PEOPLE_PER_PASS]:
        score = float(row[55])
        if score < min_score:
            continue
        y_x_score = row[:51].reshape(KEYPOINTS, 3).astype(np.float64)
        x, y = geometry.to_frame(y_x_score[:, 1] * input_width, y_x_score[:, 0] * input_height)
        keypoints = np.column_stack([x, y, np.clip(y_x_score[:, 2], 0.0, 1.0)])
        corner_x, corner_y = geometry.to_frame(np.array([row[52], row[54]]) * input_width,
                                               np.array([row[51], row[53]]) * input_height)
        box = (float(corner_x.min()), float(corner_y.min()), float(corner_x.max()), float(corner_y.max()))
        people.append(Person(box, score, keypoints, view_index, geometry.rotation))
    return people


def clip_people(people: list[Person], width: int, height: int) -> list[Person]:
    kept = []
    for person in people:
        x_min, y_min, x_max, y_max = person.box
        box = (min(max(x_min, 0.0), width), min(max(y_min, 0.0), height),
               min(max(x_max, 0.0), width), min(max(y_max, 0.0), height))
        if box[2] - box[0] < 2 or box[3] - box[1] < 2:
            continue
        person.box = box
        person.keypoints[:, 0] = np.clip(person.keypoints[:, 0], 0, width)
        person.keypoints[:, 1] = np.clip(person.keypoints[:, 1], 0, height)
        kept.append(person)
    return kept


def box_overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> tuple[float, float]:
    """(IoU, intersection over the smaller box's area) of two x_min, y_min, x_max, y_max boxes."""
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    area_a = max(a[2] - a[0], 0.0) * max(a[3] - a[1], 0.0)
    area_b = max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)
    union = area_a + area_b - intersection
    return (intersection / union if union > 0 else 0.0,
            intersection / min(area_a, area_b) if min(area_a, area_b) > 0 else 0.0)


def keypoint_similarity(a: Person, b: Person, min_score: float = 0.3) -> float:
    """COCO-style object keypoint similarity of two skeletons over keypoints both see (0 when none)."""
    visible = (a.keypoints[:, 2] >= min_score) & (b.keypoints[:, 2] >= min_score)
    if visible.sum() < 3:
        return 0.0
    x_min, y_min, x_max, y_max = a.box
    area = max((x_max - x_min) * (y_max - y_min), 1.0)
    distance = np.sum((a.keypoints[visible, :2] - b.keypoints[visible, :2]) ** 2, axis=1)
    return float(np.mean(np.exp(-distance / (2 * area * 0.1 ** 2))))


def merge_people(people: list[Person], iou_threshold: float = 0.5, containment_threshold: float = 0.8,
                 same_skeleton: float = 0.5) -> list[Person]:
    """One person per body from the people several views found, best score first.

    A person is dropped as a duplicate of a better-scoring one when their boxes
    overlap with IoU >= ``iou_threshold``, or when one box lies mostly inside
    the other (a tile's cut-off view of a body the whole frame saw) and their
    keypoints agree. Two people standing one behind the other overlap too, but
    their keypoints do not agree, so both stay.
    """
    order = sorted(people, key=lambda person: person.score, reverse=True)
    kept: list[Person] = []
    for person in order:
        duplicate = None
        for other in kept:
            iou, containment = box_overlaps(person.box, other.box)
            if iou >= iou_threshold or (containment >= containment_threshold
                                        and keypoint_similarity(other, person) >= same_skeleton):
                duplicate = other
                break
        if duplicate is None:
            kept.append(person)
        else:
            duplicate.votes += 1
    return kept


Runner = Callable[[np.ndarray], np.ndarray]
"""Runs MoveNet on one (H, W, 3) uint8 input and returns its (N, 56) rows."""


def detect_people(rgb: np.ndarray, views: Sequence[View], run: Runner, min_score: float,
                  view_min_scores: Optional[Sequence[float]] = None) -> list[Person]:
    """People in an (H, W, 3) uint8 RGB frame, merged over the views, in frame pixels."""
    height, width = rgb.shape[:2]
    found = []
    smaller = None  # the largest whole-frame, unturned view's input, reused to make the smaller views
    for index, view in sorted(enumerate(views), key=lambda item: -item[1].pixels):
        threshold = min_score if view_min_scores is None else max(min_score, view_min_scores[index])
        image, geometry = prepare_view(rgb, view, smaller)
        if smaller is None and view.rotation == 0 and (view.x0, view.y0, view.x1, view.y1) == (0, 0, 1, 1):
            smaller = image[geometry.pad_y:geometry.pad_y + round(geometry.crop_height * geometry.scale),
                            geometry.pad_x:geometry.pad_x + round(geometry.crop_width * geometry.scale)]
        found += decode_people(run(image), geometry, view.input_width, view.input_height, threshold, index)
    return merge_people(clip_people(found, width, height))


@dataclass
class MoveNetOnnx:
    """MoveNet MultiPose on onnxruntime: CUDA first when the device is a GPU, else the CPU."""

    path: Path
    providers: Sequence[str] = ("CPUExecutionProvider",)
    intra_op_threads: int = 1
    session: object = field(init=False, repr=False)

    def __post_init__(self) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = 1
        self.session = onnxruntime.InferenceSession(str(self.path), sess_options=options,
                                                    providers=list(self.providers))
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: image[np.newaxis]})[0][0]


def best_input(width: int, height: int, budget: int, step: int = 32) -> tuple[int, int]:
    """The MoveNet input size (multiples of ``step``, at most ``budget`` pixels) that shows a width x height
    image at the largest letterboxed scale; ties go to the smaller input."""
    best = (0.0, 0, step, step)
    for input_width in range(step, budget // step + 1, step):
        input_height = (budget // input_width) // step * step
        if input_height < step:
            break
        scale = min(input_width / width, input_height / height)
        # Trim what the letterbox would only pad.
        input_width = min(input_width, -(-round(width * scale) // step) * step)
        input_height = min(input_height, -(-round(height * scale) // step) * step)
        candidate = (scale, -input_width * input_height, input_width, input_height)
        if candidate > best:
            best = candidate
    return best[2], best[3]


@lru_cache(maxsize=16)
def plan_views(width: int, height: int, upright_pixels: int, turned_pixels: int) -> tuple[View, ...]:
    """The whole frame upright within ``upright_pixels`` of input, and turned by 90 degrees each way within
    ``turned_pixels`` each, each input shaped to show the frame as large as its pixels allow."""
    upright = View(0, 0, 1, 1, *best_input(width, height, upright_pixels))
    turned = best_input(height, width, turned_pixels)
    return (upright, View(0, 0, 1, 1, *turned, rotation=90), View(0, 0, 1, 1, *turned, rotation=270))
