"""Reconciliation: the running subscriptions follow the assignments file and the registry."""

import time

import yaml
from testkit import wait_for

from ruth_ai_core.reconcile import Reconciler
from ruth_ai_core.registry import ModelRegistry


def write_assignments(path, pairs):
    # Each write must change the file's signature even within one mtime tick.
    path.write_text(yaml.safe_dump({"assignments": [{"camera": c, "model": m, "fps": f} for c, m, f in pairs]}))


def keys(core):
    return sorted(s.key for s in core.subscriptions())


def test_changes_add_and_remove_only_what_differs(start_daemon, make_core, publisher, cameras, registry, tmp_path):
    a, b = start_daemon(), start_daemon()
    for daemon in (a, b):
        registry.import_from_daemon(daemon.socket)
    cam1, cam2 = cameras
    publisher([cam1, cam2], fps=25)
    core = make_core()
    path = tmp_path / "assignments.yaml"
    write_assignments(path, [(cam1, a.model_id, 5), (cam2, a.model_id, 5)])
    reconciler = Reconciler(core, path, registry)
    outcome = reconciler.reconcile()
    assert sorted(outcome.result.added) == sorted([(cam1, a.model_id), (cam2, a.model_id)])
    kept = core.subscriptions()[[s.key for s in core.subscriptions()].index((cam1, a.model_id))]

    write_assignments(path, [(cam1, a.model_id, 5), (cam1, b.model_id, 2), (cam2, a.model_id, 10)])
    assert reconciler.due()
    outcome = reconciler.reconcile()
    assert outcome.result.added == [(cam1, b.model_id)]
    assert outcome.result.changed == [(cam2, a.model_id)]
    assert outcome.result.unchanged == [(cam1, a.model_id)] and outcome.result.removed == []
    # The unchanged subscription is the same object: its gate and counters were not touched.
    assert any(s is kept for s in core.subscriptions())
    assert not reconciler.due()

    write_assignments(path, [(cam1, b.model_id, 2)])
    outcome = reconciler.reconcile()
    assert sorted(outcome.result.removed) == sorted([(cam1, a.model_id), (cam2, a.model_id)])
    assert keys(core) == [(cam1, b.model_id)]
    assert [watch.camera_id for watch in core.cameras()] == [cam1]  # cam2 stopped with its last subscription
    wait_for(lambda: core.counts()[(cam1, b.model_id)].results >= 2, message="results after reconcile")
    assert core.stop().balanced


def test_a_broken_file_keeps_the_running_subscriptions(make_core, registry, tmp_path):
    path = tmp_path / "assignments.yaml"
    path.write_text("assignments: []\n")
    core = make_core()
    reconciler = Reconciler(core, path, registry)
    reconciler.reconcile()
    path.write_text("assignments:\n  - {camera: c1, model: m1, fps: -3}\n")
    outcome = reconciler.reconcile()
    assert outcome.error is not None and "fps" in outcome.error


def test_duplicate_pairs_are_an_error(make_core, registry, tmp_path):
    path = tmp_path / "assignments.yaml"
    write_assignments(path, [("c1", "m1", 5), ("c1", "m1", 2)])
    outcome = Reconciler(make_core(), path, registry).reconcile()
    assert "assigned to model 'm1' twice" in outcome.error


def test_disabling_a_model_in_the_registry_stops_its_subscriptions(
        start_daemon, make_core, publisher, cameras, registry, tmp_path):
    model = start_daemon()
    registry.import_from_daemon(model.socket)
    cam = cameras[0]
    publisher([cam], fps=25)
    core = make_core()
    path = tmp_path / "assignments.yaml"
    write_assignments(path, [(cam, model.model_id, 5)])
    reconciler = Reconciler(core, path, registry)
    reconciler.reconcile()
    assert keys(core) == [(cam, model.model_id)]
    # Another process (here: another connection) disables it; the watcher notices the commit.
    with ModelRegistry(registry.path) as operator:
        operator.set_enabled(model.model_id, False)
    assert reconciler.due()
    outcome = reconciler.reconcile()
    assert outcome.result.removed == [(cam, model.model_id)] and keys(core) == []
    assert "disabled" in outcome.rejected[0][1]
    with ModelRegistry(registry.path) as operator:
        operator.set_enabled(model.model_id, True)
    assert reconciler.reconcile().result.added == [(cam, model.model_id)]
    time.sleep(0.5)
    assert core.stop().balanced
