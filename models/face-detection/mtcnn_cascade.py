"""The MTCNN cascade (Zhang et al., 2016) in plain torch, on whatever device the image is on.

On the CPU the image may come as a uint8 numpy array instead (``CpuImage``):
OpenCV then makes the pyramid and the crops, which on one core costs a few
milliseconds where torch's area resampling costs a hundred or more.

Follows facenet-pytorch 2.6.0's detect_face step for step, except that the
non-maximum suppression is the small greedy one below instead of
torchvision's (PyPI's torchvision does not load beside torch 2.13.0), and it
takes one image rather than a batch, since a request is one frame.

1. P-Net slides over an image pyramid and proposes windows;
2. R-Net rescores 24x24 crops of the survivors and refines their boxes;
3. O-Net rescores 48x48 crops, refines the boxes again and places five
   landmarks (eyes, nose, mouth corners).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

import cv2
import numpy as np
import torch
import torch.nn.functional as functional
from mtcnn_nets import ONet, PNet, RNet

CELL_SIZE = 12
STRIDE = 2


@dataclass(frozen=True)
class CascadeSettings:
    min_face_size: float = 20.0
    """Pixels: the first pyramid level shows a face of this size as P-Net's 12-pixel window."""
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    pyramid_factor: float = 0.709
    """Scale between pyramid levels; smaller means fewer levels (faster) and coarser steps between face sizes."""


@dataclass(frozen=True)
class Faces:
    boxes: torch.Tensor
    """(N, 4) x_min, y_min, x_max, y_max in image pixels."""
    scores: torch.Tensor
    """(N,) O-Net face probability."""
    landmarks: torch.Tensor
    """(N, 5, 2) x, y of left eye, right eye, nose, left and right mouth corner."""


def nms(boxes: torch.Tensor, scores: torch.Tensor, threshold: float,
        overlap: Literal["union", "min"] = "union") -> torch.Tensor:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    ``union`` is IoU; ``min`` divides the intersection by the smaller box,
    which O-Net's stage uses to drop a box nested inside a larger one. The
    overlaps are computed at once on the boxes' device (the stages see at most
    a few thousand boxes); only the greedy pass over them runs in Python.
    """
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = scores.argsort(descending=True)
    x1, y1, x2, y2 = boxes[order].unbind(dim=1)
    extra = 1.0 if overlap == "min" else 0.0  # the reference's Min variant counts pixels inclusively
    areas = (x2 - x1 + extra) * (y2 - y1 + extra)
    width = (torch.minimum(x2[:, None], x2[None]) - torch.maximum(x1[:, None], x1[None]) + extra).clamp(min=0)
    height = (torch.minimum(y2[:, None], y2[None]) - torch.maximum(y1[:, None], y1[None]) + extra).clamp(min=0)
    intersection = width * height
    if overlap == "min":
        ratio = intersection / torch.minimum(areas[:, None], areas[None])
    else:
        ratio = intersection / (areas[:, None] + areas[None] - intersection)
    suppresses = (ratio > threshold).cpu().numpy()
    removed = np.zeros(len(order), dtype=bool)
    keep = []
    for index in range(len(order)):
        if not removed[index]:
            keep.append(index)
            removed |= suppresses[index]
    return order[torch.as_tensor(keep, device=order.device)]


def _resample(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    return functional.interpolate(image, size=(height, width), mode="area")


class CpuImage:
    """An (H, W, 3) uint8 RGB image resampled with OpenCV: the cascade's CPU path.

    torch's area interpolation (adaptive average pooling) takes 25-30 ms for one
    1280x720 pyramid level on one core, and each R-/O-Net crop is another call;
    so is OpenCV's INTER_AREA at a fractional ratio (about 14 ms). Here a level
    is made from the nearest octave above it (the image halved by exact 2x2
    averages, about 1 ms, kept for the next levels) with bilinear resampling,
    whose ratio is then between 1/2 and 1, so it does not alias. The results
    differ slightly from the reference's; models/eval measures what that does.
    """

    def __init__(self, rgb: np.ndarray) -> None:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError("expected an (H, W, 3) uint8 RGB image")
        self.rgb = rgb
        self.octaves = [rgb]
        self.shape = (1, 3) + rgb.shape[:2]
        self.dtype = torch.float32
        self.device = torch.device("cpu")

    def _octave_for(self, height: int, width: int) -> np.ndarray:
        """The smallest halving of the image still at least height x width."""
        while True:
            smallest = self.octaves[-1]
            half_height, half_width = smallest.shape[0] // 2, smallest.shape[1] // 2
            if half_height < height or half_width < width:
                break
            self.octaves.append(cv2.resize(smallest, (half_width, half_height), interpolation=cv2.INTER_AREA))
        for octave in reversed(self.octaves):
            if octave.shape[0] >= height and octave.shape[1] >= width:
                return octave
        return self.rgb

    def level(self, height: int, width: int) -> torch.Tensor:
        octave = self._octave_for(height, width)
        if octave.shape[:2] == (height, width):
            resized = octave
        else:
            resized = cv2.resize(octave, (width, height), interpolation=cv2.INTER_LINEAR)
        return torch.from_numpy(resized).permute(2, 0, 1).unsqueeze(0).to(torch.float32)

    def crops(self, corners: list[tuple[int, int, int, int]], size: int) -> torch.Tensor:
        """(N, 3, size, size): pixels x1-1..x2-1, y1-1..y2-1 of each (x1, y1, x2, y2) (the reference's
        one-based corners), resampled to size x size."""
        batch = np.empty((len(corners), size, size, 3), np.uint8)
        for index, (x1, y1, x2, y2) in enumerate(corners):
            patch = self.rgb[y1 - 1:y2, x1 - 1:x2]
            interpolation = cv2.INTER_AREA if min(patch.shape[:2]) >= size else cv2.INTER_LINEAR
            batch[index] = cv2.resize(patch, (size, size), interpolation=interpolation)
        return torch.from_numpy(batch).permute(0, 3, 1, 2).to(torch.float32)

    def new_zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        return torch.zeros(shape, dtype=torch.float32)


Image = Union[torch.Tensor, CpuImage]


def _level(image: Image, height: int, width: int) -> torch.Tensor:
    if isinstance(image, CpuImage):
        return image.level(height, width)
    return _resample(image, height, width)


def _normalise(image: torch.Tensor) -> torch.Tensor:
    """Scale to -1..1 as the nets were trained, channels-last (about twice as fast for these convs on a CPU)."""
    return ((image - 127.5) * 0.0078125).contiguous(memory_format=torch.channels_last)


def _square(boxes: torch.Tensor) -> torch.Tensor:
    """Grow each box to a square around its centre (the nets were trained on square crops)."""
    width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(width, height)
    x1 = boxes[:, 0] + width * 0.5 - side * 0.5
    y1 = boxes[:, 1] + height * 0.5 - side * 0.5
    return torch.stack([x1, y1, x1 + side, y1 + side], dim=1)


def _regress(boxes: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    width = boxes[:, 2] - boxes[:, 0] + 1
    height = boxes[:, 3] - boxes[:, 1] + 1
    return boxes + offsets * torch.stack([width, height, width, height], dim=1)


def _crops(image: Image, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, size, size) crops of the boxes, clipped to the image, resampled like the reference."""
    height, width = image.shape[-2:]
    corners = []
    for x1, y1, x2, y2 in boxes.trunc().to(torch.long).tolist():
        # At least one pixel each, so crops stay aligned with boxes; a box off the image scores low.
        x1, y1 = min(max(x1, 1), width), min(max(y1, 1), height)
        corners.append((x1, y1, min(max(x2, x1), width), min(max(y2, y1), height)))
    if not corners:
        return image.new_zeros((0, 3, size, size))
    if isinstance(image, CpuImage):
        return image.crops(corners, size)
    return torch.cat([_resample(image[:, :, y1 - 1:y2, x1 - 1:x2].contiguous(), size, size)
                      for x1, y1, x2, y2 in corners])


def _proposals(image: Image, pnet: PNet, settings: CascadeSettings) -> torch.Tensor:
    """Stage 1: (N, 5) boxes with scores from P-Net over the image pyramid."""
    height, width = image.shape[-2:]
    scale = CELL_SIZE / settings.min_face_size
    shortest = min(height, width) * scale
    found = []
    while shortest >= CELL_SIZE:
        level = _normalise(_level(image, int(height * scale + 1), int(width * scale + 1)))
        offsets, probabilities = pnet(level)
        face = probabilities[0, 1]
        cells = (face >= settings.thresholds[0]).nonzero()
        if len(cells):
            score = face[cells[:, 0], cells[:, 1]]
            position = cells.flip(1).to(image.dtype)  # x, y
            top_left = ((STRIDE * position + 1) / scale).floor()
            bottom_right = ((STRIDE * position + CELL_SIZE) / scale).floor()
            boxes = torch.cat([top_left, bottom_right], dim=1)
            regression = offsets[0, :, cells[:, 0], cells[:, 1]].T
            keep = nms(boxes, score, 0.5)
            found.append(torch.cat([boxes[keep], score[keep, None], regression[keep]], dim=1))
        scale *= settings.pyramid_factor
        shortest *= settings.pyramid_factor
    if not found:
        return image.new_zeros((0, 5))
    candidates = torch.cat(found)
    candidates = candidates[nms(candidates[:, :4], candidates[:, 4], 0.7)]
    side = torch.stack([candidates[:, 2] - candidates[:, 0], candidates[:, 3] - candidates[:, 1]] * 2, dim=1)
    boxes = candidates[:, :4] + candidates[:, 5:9] * side
    return torch.cat([_square(boxes), candidates[:, 4:5]], dim=1)


def detect_faces(image: Union[torch.Tensor, np.ndarray], nets: tuple[PNet, RNet, ONet],
                 settings: CascadeSettings) -> Faces:
    """Faces in a (3, H, W) RGB float tensor with values 0..255 (on any device), or in an (H, W, 3) uint8
    RGB array (the CPU path: OpenCV resamples, the nets run on the CPU)."""
    pnet, rnet, onet = nets
    image = CpuImage(image) if isinstance(image, np.ndarray) else image.unsqueeze(0)
    empty = Faces(image.new_zeros((0, 4)), image.new_zeros((0,)), image.new_zeros((0, 5, 2)))
    candidates = _proposals(image, pnet, settings)
    if len(candidates) == 0:
        return empty

    offsets, probabilities = rnet(_normalise(_crops(image, candidates[:, :4], 24)))
    passed = probabilities[:, 1] > settings.thresholds[1]
    boxes, scores, offsets = candidates[passed, :4], probabilities[passed, 1], offsets[passed]
    keep = nms(boxes, scores, 0.7)
    boxes = _square(_regress(boxes[keep], offsets[keep]))
    if len(boxes) == 0:
        return empty

    offsets, points, probabilities = onet(_normalise(_crops(image, boxes, 48)))
    passed = probabilities[:, 1] > settings.thresholds[2]
    boxes, scores, offsets, points = boxes[passed], probabilities[passed, 1], offsets[passed], points[passed]
    width = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    height = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    landmarks = torch.stack([width * points[:, :5] + boxes[:, 0:1] - 1,
                             height * points[:, 5:] + boxes[:, 1:2] - 1], dim=2)
    boxes = _regress(boxes, offsets)
    keep = nms(boxes, scores, 0.7, overlap="min")
    return Faces(boxes[keep], scores[keep], landmarks[keep])
