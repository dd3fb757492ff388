"""The MTCNN cascade (Zhang et al., 2016) in plain torch, on whatever device the image is on.

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
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as functional
from mtcnn_nets import ONet, PNet, RNet

CELL_SIZE = 12
STRIDE = 2


@dataclass(frozen=True)
class CascadeSettings:
    min_face_size: float = 20.0
    thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7)
    pyramid_factor: float = 0.709


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


def _crops(image: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """(N, 3, size, size) crops of the boxes, clipped to the image, resampled like the reference."""
    height, width = image.shape[-2:]
    corners = boxes.trunc().to(torch.long).tolist()
    crops = []
    for x1, y1, x2, y2 in corners:
        # At least one pixel each, so crops stay aligned with boxes; a box off the image scores low.
        x1, y1 = min(max(x1, 1), width), min(max(y1, 1), height)
        x2, y2 = min(max(x2, x1), width), min(max(y2, y1), height)
        crops.append(_resample(image[:, :, y1 - 1:y2, x1 - 1:x2].contiguous(), size, size))
    return torch.cat(crops) if crops else image.new_zeros((0, 3, size, size))


def _proposals(image: torch.Tensor, pnet: PNet, settings: CascadeSettings) -> torch.Tensor:
    """Stage 1: (N, 5) boxes with scores from P-Net over the image pyramid."""
    height, width = image.shape[-2:]
    scale = CELL_SIZE / settings.min_face_size
    shortest = min(height, width) * scale
    found = []
    while shortest >= CELL_SIZE:
        level = _normalise(_resample(image, int(height * scale + 1), int(width * scale + 1)))
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


def detect_faces(image: torch.Tensor, nets: tuple[PNet, RNet, ONet], settings: CascadeSettings) -> Faces:
    """Faces in a (3, H, W) RGB float image with values 0..255."""
    pnet, rnet, onet = nets
    image = image.unsqueeze(0)
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
