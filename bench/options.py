"""What every benchmark section is told about the run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class Options:
    quick: bool = False
    repeats: int = 5
    """Interleaved runs per measurement; tables report the median over them."""
    compare_with: Optional[str] = None
    """A git revision whose Core and daemon sections that support it measure beside this tree's."""
    output_dir: Path = Path("bench-output")
    """Where sections write files (plots)."""
    device: Optional[str] = None
    """RUTH_DEVICE for the daemons of sections that support it (batching): cuda on a GPU machine."""

    def scaled(self, full: float, quick: float) -> float:
        """A duration or count: ``full`` in a normal run, ``quick`` under --quick."""
        return quick if self.quick else full
