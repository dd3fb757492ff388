"""What a running Ruth AI Core's metrics endpoint says about its frames: the one scrape the benches read.

Every selected frame ends as a result or an error event, a counted drop, or is still queued or in flight
(README, "When a frame is dropped"), so ``balance`` is 0 for a Core that loses nothing; a scrape can
straddle a few frames, which ``accounted`` allows for.
"""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families


@dataclass
class CoreCounts:
    selected: float = 0.0
    results: float = 0.0
    errors: float = 0.0
    drops: dict[str, float] = field(default_factory=dict)
    """Frames skipped, by reason."""
    outstanding: float = 0.0
    """Frames queued for a slot or in flight to a model."""
    stored: float = 0.0
    """Events the database sink has written."""

    @property
    def answered(self) -> float:
        return self.results + self.errors

    @property
    def dropped(self) -> float:
        return sum(self.drops.values())

    @property
    def balance(self) -> float:
        """selected - (answered + dropped + outstanding): 0 when nothing was lost."""
        return self.selected - self.answered - self.dropped - self.outstanding

    @property
    def accounted(self) -> bool:
        return abs(self.balance) <= max(2.0, 0.001 * self.selected)


def scrape_core(url: str, timeout_s: float = 10.0) -> CoreCounts:
    """Read Core's counters at ``url`` (its /metrics); raises OSError when nothing answers."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        text = response.read().decode()
    counts = CoreCounts()
    for family in text_string_to_metric_families(text):
        for metric in family.samples:
            if metric.name == "ruth_ai_frames_selected_total":
                counts.selected += metric.value
            elif metric.name == "ruth_ai_events_total":
                if metric.labels.get("kind") == "result":
                    counts.results += metric.value
                else:
                    counts.errors += metric.value
            elif metric.name == "ruth_ai_frames_skipped_total":
                reason = metric.labels["reason"]
                counts.drops[reason] = counts.drops.get(reason, 0.0) + metric.value
            elif metric.name in ("ruth_ai_requests_in_flight", "ruth_ai_frames_queued"):
                counts.outstanding += metric.value
            elif metric.name == "ruth_ai_event_sink_written_total" and metric.labels.get("sink") == "database":
                counts.stored += metric.value
    return counts
