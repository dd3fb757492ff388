"""What every benchmark section is told about the run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    quick: bool = False
    repeats: int = 5
    """Interleaved runs per measurement; tables report the median over them."""

    def scaled(self, full: float, quick: float) -> float:
        """A duration or count: ``full`` in a normal run, ``quick`` under --quick."""
        return quick if self.quick else full
