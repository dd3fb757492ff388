"""Reconciliation from the database, in-process, on both backends: a node runs its cameras' assignments, follows
every change, fails closed, and keeps what runs while the database is away."""

import time

import pytest
from testkit import wait_for

from ruth_ai_core.assignments import Assignment
from ruth_ai_core.reconcile import Reconciler
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.storage.assignment_store import AssignmentStore, NodeAssignments
from ruth_ai_core.storage.database import Database


def keys(core):
    return sorted(s.key for s in core.subscriptions())


@pytest.fixture
def db(database):
    return database


def test_a_node_runs_exactly_its_cameras_and_follows_changes(start_daemon, make_core, publisher, cameras, db):
    a, b = start_daemon(), start_daemon()
    registry = ModelRegistry(db)
    for daemon in (a, b):
        registry.import_from_daemon(daemon.socket)
    cam1, cam2 = cameras
    publisher([cam1, cam2], fps=25)
    store = AssignmentStore(db)
    store.put(Assignment(camera=cam1, model=a.model_id, fps=5), node="edge-1")
    store.put(Assignment(camera=cam2, model=a.model_id, fps=5), node="edge-2")  # another node's camera
    core = make_core()
    reconciler = Reconciler(core, NodeAssignments(store, "edge-1"), registry)
    assert reconciler.reconcile().result.added == [(cam1, a.model_id)]
    assert not reconciler.due()

    store.put(Assignment(camera=cam1, model=b.model_id, fps=2))
    assert reconciler.due()
    assert reconciler.reconcile().result.added == [(cam1, b.model_id)]
    store.move_camera(cam2, "edge-1")
    assert reconciler.due() and reconciler.reconcile().result.added == [(cam2, a.model_id)]
    registry.set_enabled(a.model_id, False)  # fail closed: the registry wins over the assignments
    outcome = reconciler.reconcile()
    assert sorted(outcome.result.removed) == sorted([(cam1, a.model_id), (cam2, a.model_id)])
    assert all("disabled" in reason for _, reason in outcome.rejected)
    assert keys(core) == [(cam1, b.model_id)]
    wait_for(lambda: core.counts()[(cam1, b.model_id)].results >= 2, message="results of the remaining pair")
    store.remove(cam1, b.model_id)
    assert reconciler.reconcile().result.removed == [(cam1, b.model_id)] and keys(core) == []
    time.sleep(0.2)
    assert core.stop().balanced


def test_the_database_going_away_keeps_the_subscriptions_and_it_catches_up(start_daemon, make_core, publisher,
                                                                            cameras, own_pg_cluster, caplog):
    url = own_pg_cluster.create_database()
    with Database.open(url, upgrade=True) as db:
        model = start_daemon()
        registry = ModelRegistry(db)
        registry.import_from_daemon(model.socket)
        cam = cameras[0]
        publisher([cam], fps=25)
        store = AssignmentStore(db)
        store.put(Assignment(camera=cam, model=model.model_id, fps=5), node="edge-1")
        core = make_core()
        reconciler = Reconciler(core, NodeAssignments(store, "edge-1"), registry)
        reconciler.reconcile()
        own_pg_cluster.stop()
        assert reconciler.due() is False  # cannot tell: keep going, do not spin
        outcome = reconciler.reconcile()
        assert outcome.error is not None and "does not answer" in outcome.error
        assert keys(core) == [(cam, model.model_id)]
        before = core.counts()[(cam, model.model_id)].results
        wait_for(lambda: core.counts()[(cam, model.model_id)].results >= before + 3, message="results during the outage")
        assert sum("keeping the current subscriptions" in r.message for r in caplog.records) == 1  # logged once
        own_pg_cluster.start()
        assert reconciler.due()  # the failed reconciliation is retried as soon as the database answers
        assert reconciler.reconcile().error is None and keys(core) == [(cam, model.model_id)]
        assert any("answers again" in r.message for r in caplog.records)
        store.put(Assignment(camera=cam, model=model.model_id, fps=10))
        assert reconciler.due() and reconciler.reconcile().result.changed == [(cam, model.model_id)]
        assert core.stop().balanced
