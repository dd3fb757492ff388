"""The registry on both backends: versions, flags, task filters, fail closed, and the change revision."""

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from ruth_ai_core.registry import ModelRegistry
from ruth_ai_core.storage.errors import AssignmentRejected, RegistryError
from ruth_ai_core.storage.sql import revision

from .helpers import model_config


@pytest.fixture
def registry(database):
    return ModelRegistry(database)


def test_versions_flags_and_rollback(registry):
    registry.add(model_config("det", "1.0.0"), "test")
    registry.set_enabled("det", False)
    entry = registry.add(model_config("det", "1.1.0", model_name="Det two"), "test")
    assert entry.versions == ["1.0.0", "1.1.0"] and entry.current_version == "1.1.0" and entry.name == "Det two"
    assert entry.enabled is False  # re-importing keeps the operator's flag
    rolled_back = registry.add(model_config("det", "1.0.0"), "rollback")
    assert rolled_back.current_version == "1.0.0" and rolled_back.source == "rollback"
    assert rolled_back.versions == ["1.1.0", "1.0.0"]  # oldest import first
    assert registry.add(model_config("new", "0.1.0"), "test", enabled=False).enabled is False


def test_list_filters_by_enabled_and_by_the_current_versions_tasks(registry):
    registry.add(model_config("a", tasks=("detection",)), "t")
    registry.add(model_config("b", tasks=("detection", "pose")), "t", enabled=False)
    registry.add(model_config("c", "1.0.0", tasks=("pose",)), "t")
    registry.add(model_config("c", "2.0.0", tasks=("segmentation",)), "t")
    ids = lambda **kw: [m.model_id for m in registry.list(**kw)]  # noqa: E731
    assert ids() == ["a", "b", "c"]
    assert ids(enabled=True) == ["a", "c"] and ids(enabled=False) == ["b"]
    assert ids(task="pose") == ["b"]  # c's current version no longer declares pose
    assert ids(task="segmentation", enabled=True) == ["c"]
    assert ids(task="nothing") == []
    assert registry.get("c").tasks == ["segmentation"]


def test_assignments_fail_closed_with_what_to_do(registry):
    with pytest.raises(AssignmentRejected, match=r"'ghost' is not in the registry .*ruth-ai models import"):
        registry.check_assignable("ghost")
    registry.add(model_config("sleepy"), "t", enabled=False)
    with pytest.raises(AssignmentRejected, match=r"'sleepy' is disabled.*ruth-ai models enable sleepy"):
        registry.check_assignable("sleepy")
    registry.set_enabled("sleepy", True)
    assert registry.check_assignable("sleepy").enabled
    reasons = registry.rejections(["sleepy", "ghost"])
    assert reasons["sleepy"] is None and "not in the registry" in reasons["ghost"]
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.set_enabled("ghost", True)


def test_every_change_bumps_the_revision_and_reads_do_not(registry, database):
    start = revision(database)
    registry.add(model_config("m"), "t")
    after_add = revision(database)
    assert after_add > start
    registry.list(), registry.get("m"), registry.rejections(["m"])
    assert revision(database) == after_add
    registry.set_enabled("m", False)
    assert revision(database) > after_add
    # A change made around the code (an operator in psql) counts too: the triggers live in the database.
    before = revision(database)
    with database.write() as conn:
        conn.execute(sa.text("UPDATE models SET enabled = :on"), {"on": True})
    assert revision(database) > before


def test_injection_looking_ids_are_refused_by_validation_and_are_only_data_to_sql(registry, database):
    hostile = "x'; DROP TABLE models; --"
    with pytest.raises(ValidationError, match="model_id"):
        model_config(hostile)
    assert registry.get(hostile) is None
    assert "not in the registry" in registry.rejections([hostile])[hostile]
    registry.add(model_config("still_here"), "t")
    assert [m.model_id for m in registry.list()] == ["still_here"]


def test_two_registries_on_one_database_see_each_others_changes(database_url):
    with ModelRegistry(database_url) as first, ModelRegistry(database_url) as second:
        first.add(model_config("shared"), "t")
        assert second.get("shared").enabled
        second.set_enabled("shared", False)
        assert first.get("shared").enabled is False
