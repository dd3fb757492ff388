"""Metrics: the Prometheus endpoint scraped and parsed, and ``ruth-ai status`` reading it."""

import urllib.request

from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from testkit import wait_for

from ruth_ai_core.assignments import Assignment
from ruth_ai_core.cli import main
from ruth_ai_core.status import parse, render


def samples(url):
    text = urllib.request.urlopen(url, timeout=5).read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}, text


def test_the_endpoint_exposes_requests_latency_skips_health_and_daemon_stats(
        start_daemon, make_core, publisher, cameras):
    model = start_daemon()
    cam = cameras[0]
    publisher([cam], fps=25)
    core = make_core()
    server = core.metrics.serve("127.0.0.1", 0)
    try:
        assert server.url.startswith("http://127.0.0.1:")
        core.apply([Assignment(camera=cam, model=model.model_id, fps=10)])
        wait_for(lambda: core.counts()[(cam, model.model_id)].results >= 10, message="results")
        wait_for(lambda: core.router.get(model.model_id).stats is not None
                 and core.router.get(model.model_id).stats.requests_total >= 5, message="daemon stats")
        values, text = samples(server.url)
        m = model.model_id
        counts = core.counts()[(cam, m)]
        assert values[("ruth_ai_requests_total", (("model", m), ("status", "ok")))] >= 10
        assert values[("ruth_ai_request_latency_seconds_count", (("camera", cam), ("model", m)))] >= 10
        assert values[("ruth_ai_frames_selected_total", (("camera", cam), ("model", m)))] >= counts.selected - 2
        assert values[("ruth_ai_model_healthy", (("model", m),))] == 1.0
        assert values[("ruth_ai_subscription_target_fps", (("camera", cam), ("model", m)))] == 10.0
        assert values[("ruth_ai_model_daemon_requests_total", (("model", m),))] >= 5
        assert ("ruth_ai_model_daemon_latency_ms", (("model", m), ("quantile", "0.5"))) in values
        assert ("ruth_ai_requests_in_flight", (("model", m),)) in values
        assert ("ruth_ai_detections_total", (("camera", cam), ("model", m))) in values

        model.stop()
        wait_for(lambda: samples(server.url)[0][("ruth_ai_model_healthy", (("model", m),))] == 0.0,
                 timeout_s=3, message="unhealthy gauge")
        wait_for(lambda: samples(server.url)[0].get(
            ("ruth_ai_frames_skipped_total", (("camera", cam), ("model", m), ("reason", "model_unavailable"))), 0) > 0,
            timeout_s=3, message="skips counted")

        first = parse(samples(server.url)[1], taken_at=0.0)
        table = render(parse(samples(server.url)[1], taken_at=1.0), first)
        assert cam in table and "UNHEALTHY" in table and "model_unavailable=" in table

        result = CliRunner().invoke(main, ["status", "--metrics-url", server.url, "--interval", "0.2"])
        assert result.exit_code == 0, result.output
        assert m in result.output and "target" in result.output
    finally:
        server.close()


def test_status_without_a_core_says_so():
    result = CliRunner().invoke(main, ["status", "--metrics-url", "http://127.0.0.1:9/metrics", "--interval", "0"])
    assert result.exit_code == 3
    assert "no Ruth AI Core metrics" in result.output
