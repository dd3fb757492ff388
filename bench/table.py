"""Result rows, their targets, and the table ``python -m bench`` prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class Target:
    """How ours must compare with the reference: ``lower`` or ``higher`` is better, within ``tolerance``.

    ``Target("lower")`` means no slower than the reference; ``Target("lower", 1.10)``
    allows 10% more.
    """

    better: Literal["lower", "higher"]
    tolerance: float = 1.0

    def met(self, ours: float, reference: float) -> bool:
        if self.better == "lower":
            return ours <= reference * self.tolerance
        return ours * self.tolerance >= reference

    def __str__(self) -> str:
        sign = "<=" if self.better == "lower" else ">="
        if self.tolerance == 1.0:
            return f"{sign} ref"
        factor = self.tolerance if self.better == "lower" else 1.0 / self.tolerance
        return f"{sign} {factor:.2f} x ref"


@dataclass(frozen=True)
class Row:
    section: str
    metric: str
    unit: str
    ours: float
    reference: Optional[float] = None
    reference_name: str = ""
    target: Optional[Target] = None

    @property
    def ratio(self) -> Optional[float]:
        if self.reference is None or self.reference == 0:
            return None
        return self.ours / self.reference

    @property
    def verdict(self) -> str:
        if self.target is None or self.reference is None:
            return ""
        return "PASS" if self.target.met(self.ours, self.reference) else "MISS"


@dataclass
class SectionResult:
    """What a section hands back: its rows, and lines worth printing under the table."""

    rows: list[Row]
    notes: list[str]


HEADERS = ("section", "metric", "ours", "reference", "ratio", "target", "result")


def render(rows: list[Row]) -> str:
    """A markdown table, one line per row."""
    lines = [_line(HEADERS), _line(tuple("---" for _ in HEADERS))]
    for row in rows:
        reference = "" if row.reference is None else f"{_number(row.reference)} {row.unit} ({row.reference_name})"
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}"
        lines.append(_line((row.section, row.metric, f"{_number(row.ours)} {row.unit}", reference, ratio,
                            "" if row.target is None else str(row.target), row.verdict)))
    return "\n".join(lines)


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.1f}"


def _line(cells: tuple[str, ...]) -> str:
    return "| " + " | ".join(cells) + " |"
