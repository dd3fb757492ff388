"""``ruth-ai run --node`` as a real process, on both backends: a real daemon, a real writer, assignments and
registry changes made by the CLI, events into the database; an outage mid-run; refusing to start without one."""

import signal
import subprocess
import sys
import time
import urllib.request

import sqlalchemy as sa
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families
from testkit import wait_for

from ruth_ai_core.cli import main
from ruth_ai_core.storage import schema as t
from ruth_ai_core.storage.database import Database

from .test_run_cli import free_port, target_pairs


def ruth_ai(*args, env=None):
    """The operator's commands, run in this process (the core under test is its own process)."""
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def start_core(database_url, node, socket_dir, tmp_path, *extra):
    port = free_port()
    log_path = tmp_path / f"core-{node}.log"
    log = log_path.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "ruth_ai_core.cli", "run", "--node", node, "--database", database_url,
         "--event-sink", "database", "--socket-dir", str(socket_dir), "--metrics-port", str(port),
         "--health-interval", "0.2", *extra], stdout=log, stderr=subprocess.STDOUT)
    return process, f"http://127.0.0.1:{port}/metrics", log_path


def stop_core(process, log_path):
    process.send_signal(signal.SIGTERM)
    code = process.wait(30)
    output = log_path.read_text()
    assert code == 0, output
    return output


def stored_pairs(database_url):
    with Database.open(database_url) as db, db.read() as conn:
        rows = conn.execute(sa.select(t.events.c.camera_id, t.events.c.model_id, sa.func.count())
                            .group_by(t.events.c.camera_id, t.events.c.model_id)).all()
    return {(camera, model): count for camera, model, count in rows}


def final_counts(output):
    line = [line for line in output.splitlines() if "event sink: offered=" in line][-1]
    return {k: int(v) for k, v in (part.split("=") for part in line.split("event sink: ")[1].split())}


def test_a_node_follows_the_database_and_stores_its_events_there(start_daemon, publisher, cameras, socket_dir,
                                                                 tmp_path, database_url):
    a, b = start_daemon(), start_daemon()
    cam1, cam2 = cameras
    publisher([cam1, cam2], fps=25)
    db = ["--database", database_url]
    env = {"VAS_MODEL_SOCKET_DIR": str(socket_dir)}
    for daemon in (a, b):
        ruth_ai("models", "import", "--from-daemon", daemon.model_id, *db, env=env)
    ruth_ai("assign", cam1, a.model_id, "--fps", "5", "--node", "edge-1", *db)
    ruth_ai("assign", cam2, a.model_id, "--fps", "5", "--node", "edge-2", *db)  # not this node's
    core, url, log_path = start_core(database_url, "edge-1", socket_dir, tmp_path)
    try:
        wait_for(lambda: target_pairs(url) == [(cam1, a.model_id)], timeout_s=20, message="first subscription")
        ruth_ai("assign", cam1, b.model_id, "--fps", "5", *db)
        wait_for(lambda: target_pairs(url) == sorted([(cam1, a.model_id), (cam1, b.model_id)]), timeout_s=5,
                 message="new assignment picked up without a signal")
        ruth_ai("models", "disable", a.model_id, *db)
        wait_for(lambda: target_pairs(url) == [(cam1, b.model_id)], timeout_s=5, message="disabled model stopped")
        ruth_ai("cameras", "move", cam2, "--node", "edge-1", *db)
        ruth_ai("models", "enable", a.model_id, *db)
        wait_for(lambda: target_pairs(url) == sorted([(cam1, a.model_id), (cam1, b.model_id), (cam2, a.model_id)]),
                 timeout_s=5, message="moved camera and re-enabled model")
        wait_for(lambda: stored_pairs(database_url).get((cam2, a.model_id), 0) >= 3, timeout_s=10,
                 message="events of the moved camera in the database")
        text = urllib.request.urlopen(url, timeout=5).read().decode()
        sink = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
                if s.name.startswith("ruth_ai_event_sink_") and s.labels.get("sink") == "database"}
        assert sink["ruth_ai_event_sink_written_total"] >= 3 and sink["ruth_ai_event_sink_connected"] == 1
        assert sink["ruth_ai_event_sink_dropped_total"] == 0
    finally:
        output = stop_core(core, log_path)
    assert f"assignment {cam1} -> {a.model_id} rejected: model '{a.model_id}' is disabled" in output
    counts = final_counts(output)
    stopped = [line for line in output.splitlines() if "stopped: selected=" in line][-1]
    fields = dict(p.split("=", 1) for p in stopped.split("stopped: ")[1].split(" ") if "=" in p and not p.startswith("dropped"))
    assert fields["in_flight"] == "0"
    assert counts["offered"] == int(fields["results"]) + int(fields["errors"])
    assert counts["dropped"] == counts["rejected"] == counts["duplicates"] == 0 and counts["written"] == counts["offered"]
    assert sum(stored_pairs(database_url).values()) == counts["written"]


def test_the_database_down_for_a_while_costs_no_subscription_and_no_event(start_daemon, publisher, cameras,
                                                                           socket_dir, tmp_path, own_pg_cluster):
    database_url = own_pg_cluster.create_database()
    db = ["--database", database_url]
    ruth_ai("db", "upgrade", *db)
    model = start_daemon()
    cam = cameras[0]
    publisher([cam], fps=25)
    ruth_ai("models", "import", "--from-daemon", model.model_id, *db,
            env={"VAS_MODEL_SOCKET_DIR": str(socket_dir)})
    ruth_ai("assign", cam, model.model_id, "--fps", "10", "--node", "edge-1", *db)
    core, url, log_path = start_core(database_url, "edge-1", socket_dir, tmp_path)
    try:
        wait_for(lambda: stored_pairs(database_url).get((cam, model.model_id), 0) >= 5, timeout_s=20,
                 message="first events stored")
        own_pg_cluster.stop()
        time.sleep(4.0)  # about 40 events buffered meanwhile
        assert target_pairs(url) == [(cam, model.model_id)]  # still running
        own_pg_cluster.start()
        ruth_ai("assign", cam, model.model_id, "--fps", "5", *db)  # the listener is back: a change is seen
        wait_for(lambda: "answers again" in log_path.read_text(), timeout_s=10, message="sink reconnected")
    finally:
        output = stop_core(core, log_path)
    assert "keeping the current subscriptions" in output or "cannot write" in output
    counts = final_counts(output)
    assert counts["failures"] >= 1 and counts["dropped"] == 0 and counts["rejected"] == 0
    # A batch in doubt when the server went away counts as duplicates when resent (its rows may be stored).
    stored = counts["written"] + counts["duplicates"]
    assert stored == counts["offered"] == stored_pairs(database_url)[(cam, model.model_id)]


def test_run_refuses_to_start_without_its_database_or_with_both_sources(tmp_path, caplog):
    def run(*args):
        result = CliRunner().invoke(main, ["run", *args], catch_exceptions=False)
        return result.exit_code, result.output

    code, output = run("--node", "edge-1", "--database", f"postgresql://postgres@/ruth_ai?host={tmp_path}&port=1")
    assert code == 3 and "does not answer" in output
    code, output = run("--node", "edge-1", "--assignments", str(tmp_path / "a.yaml"))
    assert code == 2 and "--assignments FILE (single host) or --node NAME" in output
    assert run()[0] == 2
    code, _ = run("--node", "edge 1", "--registry", str(tmp_path / "r.db"))
    assert code == 2 and "cannot start: node 'edge 1'" in caplog.text
    assert not (tmp_path / "r.db").exists()  # refused before opening anything
