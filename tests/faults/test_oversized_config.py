"""Issue 7, item 8: one oversized per-request config must not knock a model out for every camera.

A config over 1 MiB made every request of its pair larger than the daemon accepts; the daemon
answered MESSAGE_TOO_LARGE and hung up while Core was still sending, Core marked the model
unhealthy, and the model's other cameras fell from 5 to 0.5 results/s. Now the limit (CONTRACT.md,
"Limits": 64 KiB of JSON) is checked when the assignments file loads: the offending assignment is
rejected with the reason, nothing is ever sent for it, and the file's other assignments run. The
router's half, that one pair's oversized requests are never sent and never change the model's health for
the others, is checked against a daemon whose own message limit is lower than Core's config limit.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import yaml
from testkit import EXAMPLE_MODEL_DIR, unique_id

from ruth_ai_core.assignments import MAX_CONFIG_BYTES, Assignment, config_problem

from .helpers import write_assignments


def padding(size: int) -> dict[str, str]:
    return {"note": "x" * size}


def rate(core, camera, model_id, seconds):
    """Results per second of one pair over the next ``seconds``, and whether its model was ever unhealthy."""
    start, began, unhealthy = core.results(camera, model_id), time.monotonic(), False
    while time.monotonic() - began < seconds:
        metrics = core.metrics() or {}
        unhealthy |= any(labels.get("model") == model_id and value == 0
                         for labels, value in metrics.get("ruth_ai_model_healthy", []))
        time.sleep(0.2)
    return (core.results(camera, model_id) - start) / (time.monotonic() - began), unhealthy


def test_the_limit_is_the_json_on_the_wire():
    def problem(size):
        return config_problem(Assignment(camera="c", model="m", fps=1, config=padding(size)))

    overhead = len('{"note":""}')
    assert problem(MAX_CONFIG_BYTES - overhead) is None
    assert f"{MAX_CONFIG_BYTES + 1} bytes of JSON" in problem(MAX_CONFIG_BYTES - overhead + 1)


def test_an_oversized_config_is_rejected_alone_and_nothing_is_sent(start_daemon, register, feeder, core_process,
                                                                   tmp_path, registry_path):
    daemon = start_daemon()
    register(daemon)
    heavy, light = unique_id("cam"), unique_id("cam")
    feeder(heavy).start()
    feeder(light).start()
    assignments = tmp_path / "assignments.yaml"
    # 1.2 MB of JSON per request from a 200 KB file: one string and five aliases of it.
    copies = "".join(f"      copy{k}: *big\n" for k in range(5))
    assignments.write_text(f"assignments:\n  - camera: {heavy}\n    model: {daemon.model_id}\n    fps: 5\n"
                           f"    config:\n      big: &big {'x' * 200_000}\n{copies}"
                           f"  - {{camera: {light}, model: {daemon.model_id}, fps: 5}}\n")
    checked = subprocess.run([sys.executable, "-m", "ruth_ai_core.cli", "check", str(assignments),
                              "--registry", str(registry_path)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert f"REJECTED {heavy} -> {daemon.model_id}: its config is" in checked.stderr
    assert f"{MAX_CONFIG_BYTES}-byte limit" in checked.stderr
    assert f"OK       {light} -> {daemon.model_id}" in checked.stdout

    core = core_process(assignments)
    core.wait_for_more_results(light, daemon.model_id, more=2)
    achieved, unhealthy = rate(core, light, daemon.model_id, 4.0)
    assert not unhealthy and achieved >= 5 * 0.5, f"{achieved:.1f} results/s, unhealthy seen: {unhealthy}"
    assert f"assignment {heavy} -> {daemon.model_id} rejected: its config is" in core.log
    assert core.events(heavy) == [], "nothing is sent for the rejected assignment"
    with daemon.client() as client:
        stats = client.stats()
    assert stats.errors_by_code == {} and stats.succeeded_total >= 5, stats
    assert core.stop() == 0, core.log[-3000:]


def test_one_pairs_oversized_requests_leave_the_model_healthy_for_the_others(start_daemon, register, feeder,
                                                                              core_process, tmp_path):
    """A daemon that accepts 4 KiB messages, one pair whose 8 KiB config is over that, one ordinary pair.
    Sending the big requests would make the daemon answer MESSAGE_TOO_LARGE and hang up on a connection
    the ordinary pair shares, so the router never sends them: they are counted as skipped frames
    (``request_too_large``), the ordinary pair keeps its rate and the model is never marked unhealthy."""
    model_dir = tmp_path / "small_messages"
    shutil.copytree(EXAMPLE_MODEL_DIR, model_dir, ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((model_dir / "model.yaml").read_text())
    config["limits"] = {**config.get("limits", {}), "max_message_bytes": 4096}
    (model_dir / "model.yaml").write_text(yaml.safe_dump(config))
    daemon = start_daemon(model_dir)
    register(daemon)
    heavy, light = unique_id("cam"), unique_id("cam")
    feeder(heavy).start()
    feeder(light).start()
    assignments = tmp_path / "assignments.yaml"
    write_assignments(assignments, [
        {"camera": heavy, "model": daemon.model_id, "fps": 5, "config": padding(8192)},
        {"camera": light, "model": daemon.model_id, "fps": 5},
    ])
    core = core_process(assignments)
    core.wait_for_more_results(light, daemon.model_id, more=2)
    achieved, unhealthy = rate(core, light, daemon.model_id, 4.0)
    skipped = {labels["reason"]: value for labels, value in (core.metrics() or {}).get("ruth_ai_frames_skipped_total", [])
               if labels.get("camera") == heavy}
    heavy_events = core.events(heavy)
    assert core.stop() == 0, core.log[-3000:]
    assert heavy_events == [], "nothing is sent, so nothing is answered, for the oversized pair"
    assert skipped.get("request_too_large", 0) >= 5, skipped
    assert not unhealthy, "the model was marked unhealthy because of one pair's requests"
    assert achieved >= 5 * 0.5, f"the ordinary pair fell to {achieved:.1f} results/s"
    with daemon.client() as client:
        assert "MESSAGE_TOO_LARGE" not in client.stats().errors_by_code
