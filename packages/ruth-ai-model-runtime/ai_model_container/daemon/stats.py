"""Request counters and recent latencies behind the stats op."""

from __future__ import annotations

import time
from collections import Counter, deque
from typing import Optional

import numpy as np

from ai_model_container.contract.schema import ErrorCode, LatencySummary

LATENCY_WINDOW = 4096
"""Latency percentiles cover the most recent requests, not the daemon's lifetime."""


class RequestStats:
    """Touched only on the server's event loop thread, so recording takes no lock: a count and an append."""

    def __init__(self) -> None:
        self._outcomes: Counter[Optional[ErrorCode]] = Counter()
        self._latencies_ms: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self.started = time.monotonic()

    def record(self, error_code: Optional[ErrorCode], latency_s: Optional[float] = None) -> None:
        self._outcomes[error_code] += 1
        if latency_s is not None:
            self._latencies_ms.append(latency_s * 1000.0)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def snapshot(self) -> tuple[int, int, dict[str, int], LatencySummary]:
        """(requests, succeeded, errors by code, latency summary) at this instant."""
        outcomes = dict(self._outcomes)
        latencies = np.fromiter(self._latencies_ms, dtype=np.float64)
        succeeded = outcomes.pop(None, 0)
        errors = {code.value: count for code, count in outcomes.items()}
        if latencies.size == 0:
            summary = LatencySummary(count=0)
        else:
            p50, p90, p99 = np.percentile(latencies, [50, 90, 99])
            summary = LatencySummary(count=int(latencies.size), p50_ms=round(float(p50), 3), p90_ms=round(float(p90), 3),
                                     p99_ms=round(float(p99), 3), max_ms=round(float(latencies.max()), 3))
        return succeeded + sum(errors.values()), succeeded, errors, summary
