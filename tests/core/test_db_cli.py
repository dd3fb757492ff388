"""``ruth-ai`` on the database: db upgrade/current, models, assign, assignments import/export, cameras, nodes,
and the exit codes of every storage failure (2: something to fix, 3: the database does not answer)."""

import sqlite3

import pytest
import yaml
from click.testing import CliRunner
from testkit import EXAMPLE_MODEL_DIR

from ruth_ai_core.cli import main


def cli(*args, env=None):
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    return result.exit_code, result.output


def model_yaml(tmp_path, model_id):
    document = yaml.safe_load((EXAMPLE_MODEL_DIR / "model.yaml").read_text()) | {"model_id": model_id}
    path = tmp_path / f"{model_id}.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


def test_db_upgrade_and_current(empty_postgres_url, tmp_path):
    assert cli("db", "current", "--database", empty_postgres_url) == (2, "(none) (this Ruth AI Core needs 0003: run ruth-ai db upgrade)\n")
    code, output = cli("models", "list", "--database", empty_postgres_url)
    assert code == 2 and "has no Ruth AI schema yet; run: ruth-ai db upgrade" in output
    code, output = cli("db", "upgrade", "--database", empty_postgres_url)
    assert code == 0 and "schema (none) -> 0003" in output and "postgresql://postgres@/" in output
    assert cli("db", "upgrade", "--database", empty_postgres_url)[1].endswith("schema 0003, up to date\n")
    assert cli("db", "current", "--database", empty_postgres_url) == (0, "0003 (head)\n")


def test_db_upgrade_keeps_an_old_sqlite_registry(tmp_path):
    from storage.test_migrations import v1_registry

    path = tmp_path / "old.sqlite3"
    v1_registry(path)
    code, output = cli("db", "upgrade", "--registry", str(path))
    assert code == 0 and "from before migrations: its models were kept" in output
    code, output = cli("models", "list", "--registry", str(path), "--disabled")
    assert code == 0 and "det" in output and "1.1.0" in output


def test_models_assign_and_assignments_round_trip(database_url, tmp_path):
    db = ["--database", database_url]
    assert cli("models", "import", model_yaml(tmp_path, "det"), *db)[0] == 0
    assert cli("models", "import", model_yaml(tmp_path, "pose"), "--disabled", *db)[0] == 0
    assert "det" in cli("models", "list", "--enabled", "--task", "detection", *db)[1]
    assert "pose" not in cli("models", "list", "--enabled", *db)[1]

    assert cli("assign", "lobby", "det", "--fps", "5", "--node", "edge-1", "--config", '{"threshold": 0.5}', *db) == \
        (0, "lobby -> det at 5 fps on node edge-1\n")
    code, output = cli("assign", "lobby", "pose", "--fps", "5", *db)
    assert code == 2 and "model 'pose' is disabled" in output
    code, output = cli("assign", "lobby", "ghost", "--fps", "5", *db)
    assert code == 2 and "model 'ghost' is not in the registry" in output
    code, output = cli("assign", "gate", "det", "--fps", "5", *db)
    assert code == 2 and "camera 'gate' is new: say which node" in output
    code, output = cli("assign", "lobby", "det", "--fps", "5", "--node", "edge-2", *db)
    assert code == 2 and "ruth-ai cameras move lobby --node edge-2" in output
    assert cli("assign", "x'; DROP TABLE cameras; --", "det", "--fps", "5", "--node", "e", *db)[0] == 2
    assert cli("assign", "lobby", "det", "--fps", "5", "--config", "[1]", *db)[0] == 2
    assert cli("assign", "lobby", "det", "--fps", "-5", *db)[0] == 2

    exported = tmp_path / "edge-1.yaml"
    assert cli("assignments", "export", "--node", "edge-1", "-o", str(exported), *db)[0] == 0
    assert yaml.safe_load(exported.read_text()) == {"assignments": [
        {"camera": "lobby", "model": "det", "fps": 5.0, "max_in_flight": 1, "config": {"threshold": 0.5}}]}
    # The exported file is what `ruth-ai run --assignments` and `ruth-ai check` read.
    assert cli("check", str(exported), *db)[0] == 0

    incoming = tmp_path / "incoming.yaml"
    incoming.write_text(yaml.safe_dump({"assignments": [{"camera": "gate", "model": "det", "fps": 2},
                                                        {"camera": "hall", "model": "det", "fps": 1}]}))
    assert cli("assignments", "import", str(incoming), "--node", "edge-1", "--replace", *db) == \
        (0, "node edge-1: 2 added, 0 changed, 1 removed, 0 unchanged\n")
    code, listing = cli("assignments", "list", "--node", "edge-1", *db)
    assert code == 0 and "gate" in listing and "hall" in listing and "lobby" not in listing
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"assignments": [{"camera": "gate", "model": "pose", "fps": 2}]}))
    code, output = cli("assignments", "import", str(bad), "--node", "edge-1", *db)
    assert code == 2 and "gate -> pose" in output
    assert cli("cameras", "move", "hall", "--node", "edge-2", *db) == (0, "hall: node edge-1 -> edge-2\n")
    code, output = cli("nodes", *db)
    assert code == 0 and [line.split() for line in output.splitlines()[1:]] == [["edge-1", "2", "1"], ["edge-2", "1", "1"]]
    assert cli("unassign", "hall", "det", *db) == (0, "hall -> det removed\n")
    assert cli("unassign", "hall", "det", *db)[0] == 1


def test_storage_failures_end_with_a_message_and_the_right_exit_code(tmp_path):
    code, output = cli("models", "list", "--database", "mysql://x@y/z")
    assert code == 2 and output.startswith("error: ") and "unsupported database" in output
    code, output = cli("models", "list", "--database", "sqlite:///a.db", "--registry", "b.db")
    assert code == 2 and "not both" in output
    code, output = cli("assign", "c", "m", "--fps", "1", "--database", f"postgresql://postgres@/ruth_ai?host={tmp_path}&port=1")
    assert code == 3 and "does not answer" in output
    future = tmp_path / "future.sqlite3"
    sqlite3.connect(future).execute("PRAGMA user_version = 99").connection.close()
    code, output = cli("models", "list", "--registry", str(future))
    assert code == 2 and "newer than this Ruth AI Core" in output
    code, output = cli("models", "list", env={"RUTH_AI_DATABASE": "nonsense"})
    assert code == 2 and "not a database URL" in output


@pytest.mark.parametrize("command", [["db", "upgrade"], ["models", "list"], ["check", "a.yaml"], ["assign", "c", "m", "--fps", "1"],
                                     ["assignments", "list"], ["cameras", "move", "c", "--node", "n"], ["nodes"],
                                     ["run", "--node", "n"], ["api"]])
def test_every_storage_command_takes_database_and_registry(command):
    code, output = cli(*command, "--help")
    assert code == 0 and "--database URL" in output and "--registry" in output
