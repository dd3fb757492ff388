"""The model registry: persistent, metadata only, and fail closed."""

import sqlite3

import pytest
import yaml
from click.testing import CliRunner
from testkit import EXAMPLE_MODEL_DIR

from ai_model_container.contract.client import ModelUnavailable
from ai_model_container.contract.model_config import ModelConfigError
from ruth_ai_core.assignments import Assignment
from ruth_ai_core.cli import main
from ruth_ai_core.reconcile import check_assignments
from ruth_ai_core.registry import AssignmentRejected, ModelRegistry, RegistryError
from ruth_ai_core.storage.errors import SchemaError


def write_model_yaml(directory, **changes):
    config = yaml.safe_load((EXAMPLE_MODEL_DIR / "model.yaml").read_text())
    config.update(changes)
    path = directory / f"{config['model_id']}-{config['model_version']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_unknown_and_disabled_models_are_rejected_with_what_to_do(registry, tmp_path):
    with pytest.raises(AssignmentRejected, match=r"'ghost' is not in the registry.*ruth-ai models import"):
        registry.check_assignable("ghost")
    registry.import_model_yaml(write_model_yaml(tmp_path, model_id="sleepy"), enabled=False)
    with pytest.raises(AssignmentRejected, match=r"'sleepy' is disabled.*ruth-ai models enable sleepy"):
        registry.check_assignable("sleepy")
    registry.set_enabled("sleepy", True)
    assert registry.check_assignable("sleepy").enabled


def test_check_assignments_splits_accepted_from_rejected(registry, tmp_path):
    registry.import_model_yaml(write_model_yaml(tmp_path, model_id="good"))
    accepted, rejected = check_assignments(
        [Assignment(camera="c1", model="good", fps=5), Assignment(camera="c1", model="ghost", fps=5)], registry)
    assert [a.model for a in accepted] == ["good"]
    assert [(a.model, "not in the registry" in reason) for a, reason in rejected] == [("ghost", True)]


def test_versions_persist_and_the_latest_import_is_current(tmp_path):
    path = tmp_path / "reg.sqlite3"
    with ModelRegistry(path) as registry:
        registry.import_model_yaml(write_model_yaml(tmp_path, model_id="det", model_version="1.0.0"))
        registry.set_enabled("det", False)
        registry.import_model_yaml(write_model_yaml(tmp_path, model_id="det", model_version="1.1.0"))
    with ModelRegistry(path) as reopened:
        entry = reopened.get("det")
    assert entry.versions == ["1.0.0", "1.1.0"] and entry.current_version == "1.1.0"
    assert entry.enabled is False  # re-importing keeps the operator's flag
    assert entry.metadata["model_version"] == "1.1.0" and entry.source.startswith("model.yaml:")


def test_import_from_a_running_daemon_uses_its_describe_op(registry, example_daemon):
    entry = registry.import_from_daemon(example_daemon.socket)
    assert entry.model_id == example_daemon.model_id
    assert entry.metadata["entry_point"] == "bright_regions:BrightRegionHandler"
    assert entry.source == f"describe:{example_daemon.socket}"


def test_import_failures_leave_the_registry_unchanged(registry, tmp_path, socket_dir):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_id: x\nmodel_version: one\n")
    with pytest.raises(ModelConfigError, match="model_version"):
        registry.import_model_yaml(bad)
    with pytest.raises(ModelUnavailable):
        registry.import_from_daemon(socket_dir / "vas_model_nobody.sock", timeout_s=0.5)
    assert registry.list() == []
    with pytest.raises(RegistryError, match="not in the registry"):
        registry.set_enabled("x", True)


def test_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "future.sqlite3"
    sqlite3.connect(path).execute("PRAGMA user_version = 99").connection.close()
    with pytest.raises(SchemaError, match="newer"):
        ModelRegistry(path)


def test_models_cli_round_trip(tmp_path):
    runner = CliRunner()
    db = str(tmp_path / "cli.sqlite3")
    path = write_model_yaml(tmp_path, model_id="clidet")
    result = runner.invoke(main, ["models", "import", str(path), "--registry", db])
    assert result.exit_code == 0 and "clidet 1.0.0 imported (enabled)" in result.output
    assert runner.invoke(main, ["models", "disable", "clidet", "--registry", db]).exit_code == 0
    listing = runner.invoke(main, ["models", "list", "--registry", db])
    assert "clidet" in listing.output and "NO" in listing.output
    shown = runner.invoke(main, ["models", "show", "clidet", "--registry", db])
    assert '"enabled": false' in shown.output
    assignments = tmp_path / "a.yaml"
    assignments.write_text("assignments:\n  - {camera: c1, model: clidet, fps: 5}\n  - {camera: c1, model: ghost, fps: 5}\n")
    check = runner.invoke(main, ["check", str(assignments), "--registry", db])
    assert check.exit_code == 2
    assert "REJECTED c1 -> clidet: model 'clidet' is disabled" in check.output
    assert "REJECTED c1 -> ghost: model 'ghost' is not in the registry" in check.output
    assert runner.invoke(main, ["models", "enable", "nope", "--registry", db]).exit_code == 1
    assert runner.invoke(main, ["models", "import", "--registry", db]).exit_code == 2
