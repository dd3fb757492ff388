"""Prometheus metrics of the core, served on a local address (127.0.0.1 by default).

Every series the core exports, in one place:

- ruth_ai_requests_total{model, status}: requests answered; status is ``ok`` or the error code
- ruth_ai_request_latency_seconds{camera, model}: core -> daemon -> core, histogram
  (sum over ``camera`` for the per-model view)
- ruth_ai_frames_selected_total{camera, model}: frames the FPS gate chose
- ruth_ai_frames_skipped_total{camera, model, reason}: selected frames never sent
- ruth_ai_events_total{camera, model, kind}: events written, kind ``result`` or ``error``
- ruth_ai_detections_total{camera, model}
- ruth_ai_requests_in_flight{model}: sent and not yet answered
- ruth_ai_frames_queued{model}: selected, waiting in the core for room at the model
- ruth_ai_subscription_target_fps{camera, model}
- ruth_ai_model_healthy{model}: 1 healthy, 0 unhealthy (absent until the first probe)
- ruth_ai_camera_streaming{camera}: 1 while the camera's ring is readable, else 0
- ruth_ai_camera_ring_errors_total{camera, reason}: looks at a ring that found it unusable
- ruth_ai_events_dropped_total: events the sink could not keep (its buffer was full, or a write failed)
- ruth_ai_model_daemon_*{model}: the daemon's own stats op, as last polled by the health monitor
  (requests, errors, in flight, latency quantiles, uptime, GPU memory in use)
- ruth_ai_event_sink_*{sink}: the event sink's counters (``EventSinkCollector``): events offered,
  written, duplicates (replayed rows the database already had), dropped (buffer full), rejected (refused
  by the database), batches, failures (failed batch attempts), buffered and capacity, connected

Nothing is counted here on the camera path: the core keeps plain integers on
its event loop, and a scrape asks the loop for a ``CoreSample`` of them. A
private ``CollectorRegistry`` per core keeps several cores in one process
(tests) from colliding.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

from ai_model_container.contract.schema import StatsResponse

from .subscription import LATENCY_BUCKETS

DEFAULT_METRICS_ADDR = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464


@dataclass
class PairSample:
    camera: str
    model: str
    target_fps: Optional[float]
    """None once the pair was removed (its counters stay, so they never go backwards)."""
    selected: int
    results: int
    errors: int
    detections: int
    skipped: dict[str, int]
    latency_buckets: list[int]
    latency_sum: float


@dataclass
class ModelSample:
    model: str
    healthy: Optional[bool]
    requests: dict[str, int]
    in_flight: int
    queued: int
    stats: Optional[StatsResponse]


@dataclass
class CameraSample:
    camera: str
    streaming: bool
    ring_errors: dict[str, int]


@dataclass
class CoreSample:
    pairs: list[PairSample] = field(default_factory=list)
    models: list[ModelSample] = field(default_factory=list)
    cameras: list[CameraSample] = field(default_factory=list)
    events_dropped: int = 0


class _CoreCollector(Collector):
    def __init__(self, sample: Callable[[], CoreSample]) -> None:
        self._sample = sample

    def collect(self) -> Iterable[object]:
        sample = self._sample()
        yield from _pair_families(sample.pairs)
        yield from _model_families(sample.models)
        streaming = GaugeMetricFamily("ruth_ai_camera_streaming", "1 while the camera's ring is readable.",
                                      labels=["camera"])
        ring_errors = CounterMetricFamily("ruth_ai_camera_ring_errors", "Looks at a ring that found it unusable.",
                                          labels=["camera", "reason"])
        for camera in sample.cameras:
            streaming.add_metric([camera.camera], 1 if camera.streaming else 0)
            for reason, count in camera.ring_errors.items():
                ring_errors.add_metric([camera.camera, reason], count)
        dropped = CounterMetricFamily("ruth_ai_events_dropped", "Events the sink could not keep.")
        dropped.add_metric([], sample.events_dropped)
        yield from (streaming, ring_errors, dropped)


def _pair_families(pairs: list[PairSample]) -> Iterable[object]:
    labels = ["camera", "model"]
    selected = CounterMetricFamily("ruth_ai_frames_selected", "Frames selected by the FPS gate.", labels=labels)
    skipped = CounterMetricFamily("ruth_ai_frames_skipped", "Selected frames not sent, by reason.",
                                  labels=labels + ["reason"])
    events = CounterMetricFamily("ruth_ai_events", "Events written, by kind.", labels=labels + ["kind"])
    detections = CounterMetricFamily("ruth_ai_detections", "Detections in result events.", labels=labels)
    target = GaugeMetricFamily("ruth_ai_subscription_target_fps", "Target FPS of each subscription.", labels=labels)
    latency = HistogramMetricFamily("ruth_ai_request_latency_seconds", "Core -> daemon -> core latency.",
                                    labels=labels)
    for pair in pairs:
        key = [pair.camera, pair.model]
        selected.add_metric(key, pair.selected)
        for reason, count in pair.skipped.items():
            skipped.add_metric(key + [reason], count)
        events.add_metric(key + ["result"], pair.results)
        events.add_metric(key + ["error"], pair.errors)
        detections.add_metric(key, pair.detections)
        if pair.target_fps is not None:
            target.add_metric(key, pair.target_fps)
        cumulative, buckets = 0, []
        for bound, count in zip((*(f"{b:g}" for b in LATENCY_BUCKETS), "+Inf"), pair.latency_buckets):
            cumulative += count
            buckets.append((bound, cumulative))
        latency.add_metric(key, buckets, pair.latency_sum)
    return (selected, skipped, events, detections, target, latency)


def _model_families(models: list[ModelSample]) -> Iterable[object]:
    requests = CounterMetricFamily("ruth_ai_requests", "Inference requests answered, by outcome.",
                                   labels=["model", "status"])
    in_flight = GaugeMetricFamily("ruth_ai_requests_in_flight", "Requests awaiting an answer.", labels=["model"])
    queued = GaugeMetricFamily("ruth_ai_frames_queued", "Frames waiting for room at the model.", labels=["model"])
    healthy = GaugeMetricFamily("ruth_ai_model_healthy", "1 when the model's health op answers READY, else 0.",
                                labels=["model"])
    daemon_requests = CounterMetricFamily("ruth_ai_model_daemon_requests",
                                          "Requests the daemon has answered (its stats op).", labels=["model"])
    daemon_errors = CounterMetricFamily("ruth_ai_model_daemon_errors", "Daemon errors by code (its stats op).",
                                        labels=["model", "code"])
    daemon_in_flight = GaugeMetricFamily("ruth_ai_model_daemon_in_flight", "Requests running in the daemon.",
                                         labels=["model"])
    daemon_latency = GaugeMetricFamily("ruth_ai_model_daemon_latency_ms", "Daemon-side latency of recent requests.",
                                       labels=["model", "quantile"])
    daemon_uptime = GaugeMetricFamily("ruth_ai_model_daemon_uptime_seconds", "Daemon uptime.", labels=["model"])
    daemon_gpu = GaugeMetricFamily("ruth_ai_model_daemon_gpu_memory_bytes", "GPU memory the daemon has allocated.",
                                   labels=["model"])
    for model in models:
        for status, count in model.requests.items():
            requests.add_metric([model.model, status], count)
        in_flight.add_metric([model.model], model.in_flight)
        queued.add_metric([model.model], model.queued)
        if model.healthy is not None:
            healthy.add_metric([model.model], 1 if model.healthy else 0)
        stats = model.stats
        if stats is None:
            continue
        daemon_requests.add_metric([model.model], stats.requests_total)
        for code, count in stats.errors_by_code.items():
            daemon_errors.add_metric([model.model, code], count)
        daemon_in_flight.add_metric([model.model], stats.in_flight)
        daemon_uptime.add_metric([model.model], stats.uptime_s)
        if stats.gpu_memory_bytes is not None:
            daemon_gpu.add_metric([model.model], stats.gpu_memory_bytes)
        for quantile, value in (("0.5", stats.latency.p50_ms), ("0.9", stats.latency.p90_ms),
                                ("0.99", stats.latency.p99_ms)):
            if value is not None:
                daemon_latency.add_metric([model.model, quantile], value)
    return (requests, in_flight, queued, healthy, daemon_requests, daemon_errors, daemon_in_flight, daemon_latency,
            daemon_uptime, daemon_gpu)


class EventSinkCollector(Collector):
    """Re-exports an event sink's counters at scrape time (plain attributes: nothing is done per event).

    Works for any sink with the attributes it finds (``JsonLinesSink`` has only ``written``)."""

    COUNTERS = (("offered", "Events handed to the sink."), ("written", "Events stored (commit confirmed)."),
                ("duplicates", "Events the database already had when sent (a batch resent after a commit in doubt, "
                               "or a replay): skipped, never stored twice."),
                ("dropped", "Events dropped because the sink's buffer was full (database slow or down)."),
                ("rejected", "Events the database refused for their content (logged)."),
                ("batches", "Batches committed."), ("failures", "Batch attempts that failed."))

    def __init__(self, sink: object) -> None:
        self._sink = sink
        self._label = str(getattr(sink, "kind", "jsonl"))

    def collect(self) -> Iterable[object]:
        families: list[object] = []
        for name, help_text in self.COUNTERS:
            value = getattr(self._sink, name, None)
            if value is not None:
                family = CounterMetricFamily(f"ruth_ai_event_sink_{name}", help_text, labels=["sink"])
                family.add_metric([self._label], float(value))
                families.append(family)
        for name, help_text in (("buffered", "Events held in memory, waiting for the database."),
                                ("capacity", "Most events the sink holds before dropping."),
                                ("connected", "1 when the last batch reached the database, else 0.")):
            value = getattr(self._sink, name, None)
            if value is not None:
                family = GaugeMetricFamily(f"ruth_ai_event_sink_{name}", help_text, labels=["sink"])
                family.add_metric([self._label], float(value))
                families.append(family)
        return families


class CoreMetrics:
    def __init__(self, sample: Callable[[], CoreSample]) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_CoreCollector(sample))

    def serve(self, addr: str = DEFAULT_METRICS_ADDR, port: int = DEFAULT_METRICS_PORT) -> "MetricsServer":
        """Expose /metrics over HTTP; port 0 picks a free port (see ``MetricsServer.port``)."""
        server, thread = start_http_server(port, addr=addr, registry=self.registry)
        return MetricsServer(server, thread)


class MetricsServer:
    def __init__(self, server: object, thread: object) -> None:
        self._server = server
        self._thread = thread

    @property
    def port(self) -> int:
        return int(self._server.server_port)  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        host = self._server.server_address[0]  # type: ignore[attr-defined]
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()  # type: ignore[attr-defined]
        self._server.server_close()  # type: ignore[attr-defined]
        self._thread.join()  # type: ignore[attr-defined]
