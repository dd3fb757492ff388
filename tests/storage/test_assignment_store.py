"""Assignments in the database on both backends: nodes, fail closed, bulk import, and the reconciler's source."""

import pytest
import sqlalchemy as sa

from ruth_ai_core.assignments import Assignment, AssignmentError
from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.storage.assignment_store import AssignmentStore, NodeAssignments
from ruth_ai_core.storage.errors import AssignmentConflict, AssignmentRejected
from ruth_ai_core.storage.sql import revision

from .helpers import model_config


@pytest.fixture
def store(database):
    registry = ModelRegistry(database)
    for model in ("det", "pose"):
        registry.add(model_config(model), "t")
    registry.add(model_config("off"), "t", enabled=False)
    return AssignmentStore(database)


def a(camera, model, fps=5.0, **kw):
    return Assignment(camera=camera, model=model, fps=fps, **kw)


def test_a_camera_is_placed_on_a_node_once_and_moved_only_explicitly(store):
    with pytest.raises(AssignmentConflict, match="camera 'lobby' is new: say which node"):
        store.put(a("lobby", "det"))
    store.put(a("lobby", "det"), node="edge-1")
    store.put(a("lobby", "pose", 2, config={"threshold": 0.4}))  # the camera's node is known now
    with pytest.raises(AssignmentConflict, match="runs on node 'edge-1', not 'edge-2'.*ruth-ai cameras move lobby"):
        store.put(a("lobby", "det"), node="edge-2")
    assert store.for_node("edge-1") == [a("lobby", "det"), a("lobby", "pose", 2, config={"threshold": 0.4})]
    assert store.move_camera("lobby", "edge-2") == "edge-1"
    assert store.for_node("edge-1") == [] and len(store.for_node("edge-2")) == 2
    with pytest.raises(AssignmentConflict, match="no assignments"):
        store.move_camera("nowhere", "edge-2")


def test_unknown_and_disabled_models_are_refused_and_nothing_is_written(store, database):
    before = revision(database)
    with pytest.raises(AssignmentRejected, match="lobby -> ghost: model 'ghost' is not in the registry"):
        store.put(a("lobby", "ghost"), node="edge-1")
    with pytest.raises(AssignmentRejected, match="lobby -> off: model 'off' is disabled"):
        store.put(a("lobby", "off"), node="edge-1")
    assert store.list() == [] and store.camera_node("lobby") is None
    assert revision(database) == before


def test_invalid_node_names_are_refused(store):
    for node in ("", "edge 1", "-edge", "x" * 65, "edge;DROP"):
        with pytest.raises(AssignmentConflict, match="node"):
            store.put(a("cam", "det"), node=node)


def test_import_for_a_node_merges_or_replaces_all_or_nothing(store, database):
    first = store.import_for_node("edge-1", [a("c1", "det"), a("c2", "det"), a("c2", "pose")])
    assert sorted(first.added) == [("c1", "det"), ("c2", "det"), ("c2", "pose")]
    rev = revision(database)
    again = store.import_for_node("edge-1", [a("c1", "det"), a("c2", "det"), a("c2", "pose")])
    assert again.added == [] and len(again.unchanged) == 3
    assert revision(database) == rev  # nothing changed, no node is woken

    merged = store.import_for_node("edge-1", [a("c1", "det", 10)])
    assert merged.changed == [("c1", "det")] and merged.removed == []
    replaced = store.import_for_node("edge-1", [a("c1", "det", 10), a("c3", "pose")], replace=True)
    assert replaced.added == [("c3", "pose")] and sorted(replaced.removed) == [("c2", "det"), ("c2", "pose")]
    assert [x.key for x in store.for_node("edge-1")] == [("c1", "det"), ("c3", "pose")]

    with pytest.raises(AssignmentRejected, match="c9 -> ghost"):
        store.import_for_node("edge-1", [a("c9", "det"), a("c9", "ghost")], replace=True)
    assert [x.key for x in store.for_node("edge-1")] == [("c1", "det"), ("c3", "pose")]
    assert store.camera_node("c9") is None

    store.put(a("far", "det"), node="edge-2")
    with pytest.raises(AssignmentConflict, match=r"far \(on edge-2\)"):
        store.import_for_node("edge-1", [a("far", "pose")])


def test_listing_by_node_camera_and_the_node_summary(store):
    store.import_for_node("edge-1", [a("c1", "det"), a("c1", "pose")])
    store.import_for_node("edge-2", [a("c2", "det")])
    store.put(a("c3", "det"), node="edge-2")
    store.remove("c3", "det")
    assert not store.remove("c3", "det")
    assert [(p.assignment.key, p.node) for p in store.list(camera_id="c1")] == [(("c1", "det"), "edge-1"),
                                                                               (("c1", "pose"), "edge-1")]
    assert [p.assignment.camera for p in store.list(node="edge-2")] == ["c2"]
    assert [(n.node, n.cameras, n.assignments) for n in store.nodes()] == [("edge-1", 1, 2), ("edge-2", 2, 1)]


def test_the_node_source_signature_follows_any_change_and_bad_rows_are_an_assignment_error(store, database):
    source = NodeAssignments(store, "edge-1")
    store.put(a("c1", "det"), node="edge-1")
    seen = source.signature()
    assert source.load() == [a("c1", "det")]
    ModelRegistry(database).set_enabled("pose", False)  # a registry change is a change for every node
    assert source.signature() != seen
    with database.write() as conn:  # written around the CLI and the API
        conn.execute(sa.text("UPDATE assignments SET fps = -1"))
    with pytest.raises(AssignmentError, match="fps"):
        source.load()
    assert "edge-1" in source.describe()
