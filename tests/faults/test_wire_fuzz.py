"""The wire protocol under a seeded raw-bytes fuzzer (bench.fuzz), in CI: a few hundred cases of
random, mutated and hostile messages against a real daemon, which must answer every whole message with
a well-formed response, keep answering health, serve valid requests in between, and close every
connection it was given. ``make fuzz`` runs the same fuzzer for minutes."""

from __future__ import annotations

from testkit import unique_id

from bench.fuzz import Fuzzer, FuzzTarget, serve_one_frame

SEED = 7
CASES = 1500


def test_the_daemon_survives_a_seeded_fuzz_run_without_leaking(module_daemon):
    writer, frame_id = serve_one_frame(unique_id("cam"))
    try:
        target = FuzzTarget(module_daemon.socket, module_daemon.process.pid, module_daemon.model_id,
                            writer.camera_id, frame_id)
        report = Fuzzer(target, SEED).run(cases=CASES)
    finally:
        writer.close()
    assert report.ok, report.render()
    assert report.cases == CASES and report.replies >= report.messages * 0.9, report.render()
    assert module_daemon.process.poll() is None
    assert "Traceback" not in module_daemon.log, module_daemon.log[-3000:]
