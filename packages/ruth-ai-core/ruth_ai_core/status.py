"""``ruth-ai status``: the core's metrics endpoint, read and laid out as two tables.

Reads the same Prometheus exposition an operator's Prometheus would scrape
(parsed with ``prometheus_client.parser``), so the terminal view and the
dashboards can never disagree. Rates (achieved FPS, latency) come from two
scrapes some time apart. The demo uses the same code for its live view.
"""

from __future__ import annotations

import time
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Optional

from prometheus_client.parser import text_string_to_metric_families

PairKey = tuple[str, str]


class StatusUnavailable(Exception):
    """Nothing answered at the metrics address."""


@dataclass
class PairRow:
    target_fps: float = 0.0
    selected: float = 0.0
    results: float = 0.0
    errors: float = 0.0
    detections: float = 0.0
    latency_sum: float = 0.0
    latency_count: float = 0.0
    skipped: dict[str, float] = field(default_factory=dict)


@dataclass
class ModelRow:
    healthy: Optional[float] = None
    requests: dict[str, float] = field(default_factory=dict)
    in_flight: float = 0.0
    daemon_requests: Optional[float] = None
    daemon_p50_ms: Optional[float] = None


@dataclass
class Snapshot:
    taken_at: float
    pairs: dict[PairKey, PairRow]
    models: dict[str, ModelRow]


def fetch(url: str, timeout_s: float = 2.0) -> str:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.read().decode("utf-8")
    except OSError as exc:
        raise StatusUnavailable(f"no Ruth AI Core metrics at {url}: {exc}") from None


def parse(text: str, taken_at: Optional[float] = None) -> Snapshot:
    pairs: dict[PairKey, PairRow] = defaultdict(PairRow)
    models: dict[str, ModelRow] = defaultdict(ModelRow)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels, value, name = sample.labels, sample.value, sample.name
            pair = (labels.get("camera", ""), labels.get("model", ""))
            model = labels.get("model", "")
            if name == "ruth_ai_subscription_target_fps":
                pairs[pair].target_fps = value
            elif name == "ruth_ai_frames_selected_total":
                pairs[pair].selected = value
            elif name == "ruth_ai_frames_skipped_total":
                pairs[pair].skipped[labels["reason"]] = value
            elif name == "ruth_ai_events_total":
                if labels["kind"] == "result":
                    pairs[pair].results = value
                else:
                    pairs[pair].errors = value
            elif name == "ruth_ai_detections_total":
                pairs[pair].detections = value
            elif name == "ruth_ai_request_latency_seconds_sum":
                pairs[pair].latency_sum = value
            elif name == "ruth_ai_request_latency_seconds_count":
                pairs[pair].latency_count = value
            elif name == "ruth_ai_model_healthy":
                models[model].healthy = value
            elif name == "ruth_ai_requests_total":
                models[model].requests[labels["status"]] = value
            elif name == "ruth_ai_requests_in_flight":
                models[model].in_flight = value
            elif name == "ruth_ai_model_daemon_requests_total":
                models[model].daemon_requests = value
            elif name == "ruth_ai_model_daemon_latency_ms" and labels.get("quantile") == "0.5":
                models[model].daemon_p50_ms = value
    return Snapshot(time.monotonic() if taken_at is None else taken_at, dict(pairs), dict(models))


def scrape(url: str, timeout_s: float = 2.0) -> Snapshot:
    return parse(fetch(url, timeout_s))


def render(current: Snapshot, previous: Optional[Snapshot] = None) -> str:
    """Two tables: per (camera, model) and per model. FPS and latency are over the last interval if given."""
    lines = [
        f"{'camera':<16} {'model':<18} {'target':>6} {'fps':>6} {'lat ms':>7} {'events':>7} {'errors':>6} "
        f"{'det/frm':>7} {'skipped (reason=count)'}"
    ]
    for key in sorted(k for k, row in current.pairs.items() if row.selected or row.target_fps):
        row = current.pairs[key]
        before = previous.pairs.get(key) if previous is not None else None
        fps, latency = _rates(row, before, current.taken_at - previous.taken_at if previous else 0.0)
        skipped = ", ".join(f"{reason}={int(count)}" for reason, count in sorted(row.skipped.items()) if count) or "-"
        lines.append(
            f"{key[0]:<16} {key[1]:<18} {row.target_fps:>6.1f} {_fmt(fps, 6, 1)} {_fmt(latency, 7, 1)} "
            f"{int(row.results):>7} {int(row.errors):>6} {_fmt(row.detections / row.results if row.results else None, 7, 2)} "
            f"{skipped}"
        )
    lines.append("")
    lines.append(f"{'model':<18} {'health':<9} {'ok':>7} {'errors':>7} {'in flight':>9} {'daemon reqs':>11} {'daemon p50 ms':>13}")
    for model_id in sorted(m for m in current.models if m):
        model = current.models[model_id]
        health = {None: "unknown", 1.0: "healthy", 0.0: "UNHEALTHY"}.get(model.healthy, "?")
        ok = model.requests.get("ok", 0.0)
        errors = sum(v for k, v in model.requests.items() if k != "ok")
        lines.append(
            f"{model_id:<18} {health:<9} {int(ok):>7} {int(errors):>7} {int(model.in_flight):>9} "
            f"{_fmt(model.daemon_requests, 11, 0)} {_fmt(model.daemon_p50_ms, 13, 2)}"
        )
    return "\n".join(lines)


def _rates(row: PairRow, before: Optional[PairRow], interval_s: float) -> tuple[Optional[float], Optional[float]]:
    if before is None or interval_s <= 0:
        latency = row.latency_sum / row.latency_count * 1000.0 if row.latency_count else None
        return None, latency
    answered = (row.results + row.errors) - (before.results + before.errors)
    count = row.latency_count - before.latency_count
    latency = (row.latency_sum - before.latency_sum) / count * 1000.0 if count > 0 else None
    return answered / interval_s, latency


def _fmt(value: Optional[float], width: int, digits: int) -> str:
    if value is None:
        return f"{'-':>{width}}"
    return f"{value:>{width}.{digits}f}"
