"""Detections against ground truth: greedy matching at an IoU threshold, with ignore regions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

Box = tuple[float, float, float, float]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    width = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    height = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    intersection = width * height
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - intersection
    return intersection / union if union > 0 else 0.0


@dataclass
class Match:
    hits: int = 0
    false_alarms: int = 0
    misses: int = 0
    ignored: int = 0
    """Detections that matched an ignore box or were shorter than min_height: neither hit nor false alarm."""

    def __iadd__(self, other: "Match") -> "Match":
        self.hits += other.hits
        self.false_alarms += other.false_alarms
        self.misses += other.misses
        self.ignored += other.ignored
        return self

    @property
    def precision(self) -> float:
        found = self.hits + self.false_alarms
        return self.hits / found if found else 1.0

    @property
    def recall(self) -> float:
        wanted = self.hits + self.misses
        return self.hits / wanted if wanted else 1.0


def match(detections: Sequence[tuple[Box, float]], truth: Sequence[Box], ignore: Sequence[Box] = (),
          threshold: float = 0.5, min_height: float = 0.0) -> tuple[Match, list[int]]:
    """Match (box, score) detections to ground truth, best score first, each truth at most once.

    Truth shorter than ``min_height`` joins ``ignore``. A detection that matches
    no remaining truth counts as a false alarm unless it overlaps an ignore box
    by ``threshold`` or is itself shorter than ``min_height``. Returns the
    counts and, per detection, the index of the truth it hit (-1 if none).
    """
    wanted_index = [i for i, box in enumerate(truth) if box[3] - box[1] >= min_height]
    wanted = [truth[i] for i in wanted_index]
    ignore = list(ignore) + [box for box in truth if box[3] - box[1] < min_height]
    taken = [False] * len(wanted)
    hit_of = [-1] * len(detections)
    result = Match()
    for index in sorted(range(len(detections)), key=lambda i: -detections[i][1]):
        box = detections[index][0]
        best, best_iou = -1, threshold
        for truth_index, truth_box in enumerate(wanted):
            if not taken[truth_index]:
                overlap = iou(box, truth_box)
                if overlap >= best_iou:
                    best, best_iou = truth_index, overlap
        if best >= 0:
            taken[best] = True
            hit_of[index] = wanted_index[best]
            result.hits += 1
        elif any(iou(box, other) >= threshold for other in ignore) or box[3] - box[1] < min_height:
            result.ignored += 1
        else:
            result.false_alarms += 1
    result.misses = taken.count(False)
    return result, hit_of
