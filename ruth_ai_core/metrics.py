"""Prometheus metrics of the core, served on a local address (127.0.0.1 by default).

Every series the core exports, in one place:

- ruth_ai_requests_total{model, status}: requests sent; status is ``ok`` or the error code
- ruth_ai_request_latency_seconds{camera, model}: core -> daemon -> core, histogram
  (sum over ``camera`` for the per-model view)
- ruth_ai_frames_selected_total{camera, model}: frames the FPS gate chose
- ruth_ai_frames_skipped_total{camera, model, reason}: selected frames never sent
- ruth_ai_events_total{camera, model, kind}: events written, kind ``result`` or ``error``
- ruth_ai_detections_total{camera, model}
- ruth_ai_requests_in_flight{model}
- ruth_ai_subscription_target_fps{camera, model}
- ruth_ai_model_healthy{model}: 1 healthy, 0 unhealthy (absent until the first probe)
- ruth_ai_model_daemon_*{model}: the daemon's own stats op, as last polled by the health monitor
- ruth_ai_event_sink_*{sink}: the event sink's counters (``EventSinkCollector``): events offered,
  written, duplicates (replayed rows the database already had), dropped (buffer full), rejected (refused
  by the database), batches, failures (failed batch attempts), buffered and capacity, connected

A private ``CollectorRegistry`` per core keeps several cores in one process
(tests) from colliding.
"""

from __future__ import annotations

from typing import Callable, Iterable, Optional

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ai_model_container.schema import StatsResponse

LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
DEFAULT_METRICS_ADDR = "127.0.0.1"
DEFAULT_METRICS_PORT = 9464


class DaemonStatsCollector(Collector):
    """Re-exports each model's stats op at scrape time, from the monitor's cached answer (no I/O here)."""

    def __init__(self, stats_source: Callable[[], Iterable[tuple[str, Optional[StatsResponse]]]]) -> None:
        self._source = stats_source

    def collect(self) -> Iterable[object]:
        requests = CounterMetricFamily("ruth_ai_model_daemon_requests", "Requests the daemon has answered (its stats op).", labels=["model"])
        errors = CounterMetricFamily("ruth_ai_model_daemon_errors", "Daemon errors by code (its stats op).", labels=["model", "code"])
        in_flight = GaugeMetricFamily("ruth_ai_model_daemon_in_flight", "Requests running in the daemon.", labels=["model"])
        latency = GaugeMetricFamily("ruth_ai_model_daemon_latency_ms", "Daemon-side latency of recent requests.", labels=["model", "quantile"])
        uptime = GaugeMetricFamily("ruth_ai_model_daemon_uptime_seconds", "Daemon uptime.", labels=["model"])
        for model_id, stats in self._source():
            if stats is None:
                continue
            requests.add_metric([model_id], stats.requests_total)
            for code, count in stats.errors_by_code.items():
                errors.add_metric([model_id, code], count)
            in_flight.add_metric([model_id], stats.in_flight)
            uptime.add_metric([model_id], stats.uptime_s)
            for quantile, value in (("0.5", stats.latency.p50_ms), ("0.9", stats.latency.p90_ms), ("0.99", stats.latency.p99_ms)):
                if value is not None:
                    latency.add_metric([model_id, quantile], value)
        return [requests, errors, in_flight, latency, uptime]


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
    def __init__(self, stats_source: Optional[Callable[[], Iterable[tuple[str, Optional[StatsResponse]]]]] = None) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ruth_ai_requests", "Inference requests sent, by outcome.", ["model", "status"], registry=r)
        self.latency = Histogram("ruth_ai_request_latency_seconds", "Core -> daemon -> core latency.",
                                 ["camera", "model"], buckets=LATENCY_BUCKETS, registry=r)
        self.selected = Counter("ruth_ai_frames_selected", "Frames selected by the FPS gate.", ["camera", "model"], registry=r)
        self.skipped = Counter("ruth_ai_frames_skipped", "Selected frames not sent, by reason.", ["camera", "model", "reason"], registry=r)
        self.events = Counter("ruth_ai_events", "Events written, by kind.", ["camera", "model", "kind"], registry=r)
        self.detections = Counter("ruth_ai_detections", "Detections in result events.", ["camera", "model"], registry=r)
        self.in_flight = Gauge("ruth_ai_requests_in_flight", "Requests awaiting an answer.", ["model"], registry=r)
        self.target_fps = Gauge("ruth_ai_subscription_target_fps", "Target FPS of each subscription.", ["camera", "model"], registry=r)
        self.healthy = Gauge("ruth_ai_model_healthy", "1 when the model's health op answers READY, else 0.", ["model"], registry=r)
        if stats_source is not None:
            r.register(DaemonStatsCollector(stats_source))

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
