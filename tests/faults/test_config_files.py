"""Issue 7, items 7 and 9: every YAML entry point turns any bytes into a clean error naming the file
(with line and column, never the line's content), a live Core keeps its subscriptions through a bad
reload, and serve-all serves the good models next to a bad model.yaml.

Entry points: model.yaml (``ruth-model validate``, ``serve``, ``discover``, ``serve-all``, ``ruth-ai
models import``), assignments (``ruth-ai run`` at start and on reload, ``ruth-ai check``) and routing
(``ruth-ai run``). All go through contract.yaml_files, so the variants are checked there once per file
kind, then through each entry point as a real process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from testkit import EXAMPLE_MODEL_DIR, unique_id

from ai_model_container.contract.client import ClientError, ModelClient
from ai_model_container.contract.model_config import ModelConfigError, load_model_config
from ai_model_container.contract.paths import socket_path
from ruth_ai_core.assignments import AssignmentError, load_assignments
from ruth_ai_core.routing import RoutingError, load_routing

from .bad_yaml import BAD_YAML, CRASHED_BEFORE, alias_bomb
from .fake_daemon import FAKE_VERSION, start_fake_daemon
from .helpers import wait_for, write_assignments, write_bytes_atomically

SECRET = "s3cr3t-0123456789abcdef"
SECRET_SYNTAX_ERROR = (
    "assignments:\n  - camera: {camera}\n    model: {model}\n    fps: 5\n    config:\n"
    f'      api_token: "{SECRET}" oops\n'
)
"""A YAML syntax error on the line that holds a credential: PyYAML quotes that line in its message."""

VALID_FILES = {
    "model.yaml": (EXAMPLE_MODEL_DIR / "model.yaml").read_bytes(),
    "assignments": b"assignments:\n  - {camera: cam1, model: example, fps: 5}\n",
    "routing": b"socket_dir: /run/ruth-ai\nmodels:\n  example: {socket_dir: /run/ruth-ai/unified}\n",
}
LOADERS = {
    "model.yaml": (load_model_config, ModelConfigError),
    "assignments": (load_assignments, AssignmentError),
    "routing": (load_routing, RoutingError),
}


def ruth(*args: str, tool: str = "ruth_ai_core.cli", env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", tool, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def assert_clean(result: subprocess.CompletedProcess, code: int = 2) -> str:
    output = result.stdout + result.stderr
    assert result.returncode == code, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    return output


# -- one place: contract.yaml_files, for each kind of file ---------------------------------------------


@pytest.mark.parametrize("variant", BAD_YAML)
@pytest.mark.parametrize("kind", LOADERS)
def test_every_bad_variant_is_a_clean_error_naming_the_file(tmp_path, kind, variant):
    build, phrase = BAD_YAML[variant]
    path = tmp_path / f"{kind}.yaml"
    path.write_bytes(build(VALID_FILES[kind]))
    load, error = LOADERS[kind]
    with pytest.raises(error) as caught:
        load(path)
    message = str(caught.value)
    assert message.startswith(f"{path}"), message
    assert phrase in message, message
    assert len(message) < 400, "an error message, not a dump"


def test_a_syntax_error_gives_line_and_column_but_never_the_line(tmp_path):
    path = tmp_path / "assignments.yaml"
    path.write_text(SECRET_SYNTAX_ERROR.format(camera="cam1", model="example"))
    with pytest.raises(AssignmentError) as caught:
        load_assignments(path)
    assert str(caught.value).startswith(f"{path}:6:"), caught.value
    assert SECRET not in str(caught.value) and "api_token" not in str(caught.value)


def test_a_schema_error_names_the_field_but_never_the_value(tmp_path):
    path = tmp_path / "assignments.yaml"
    path.write_text(f"assignments:\n  - {{camera: cam1, model: example, fps: '{SECRET}'}}\n"
                    f"  - {{camera: cam2, model: example, fps: 5, max_in_flight: '{SECRET}'}}\n")
    with pytest.raises(AssignmentError) as caught:
        load_assignments(path)
    message = str(caught.value)
    assert "assignments.0.fps" in message and "assignments.1.max_in_flight" in message
    assert SECRET not in message


def test_aliases_that_stay_small_still_load(tmp_path):
    path = tmp_path / "assignments.yaml"
    path.write_text("assignments:\n"
                    "  - {camera: cam1, model: example, fps: 5, config: &shared {threshold: 0.5, classes: [a, b]}}\n"
                    "  - {camera: cam2, model: example, fps: 5, config: *shared}\n")
    loaded = load_assignments(path).assignments
    assert [a.config for a in loaded] == [{"threshold": 0.5, "classes": ["a", "b"]}] * 2


# -- every entry point, as a process -------------------------------------------------------------------


def bad_model_dirs(root: Path, variants) -> dict[str, Path]:
    """One model directory per variant, each a copy of the example model with its model.yaml broken."""
    made = {}
    for index, variant in enumerate(variants):
        directory = root / f"bad{index}"
        shutil.copytree(EXAMPLE_MODEL_DIR, directory, ignore=shutil.ignore_patterns("__pycache__"))
        (directory / "model.yaml").write_bytes(BAD_YAML[variant][0](VALID_FILES["model.yaml"]))
        made[variant] = directory
    return made


def test_ruth_model_validate_serve_and_discover_report_bad_model_yaml_files(tmp_path, socket_dir):
    dirs = bad_model_dirs(tmp_path / "models", BAD_YAML)
    output = assert_clean(ruth("validate", *(str(d / "model.yaml") for d in dirs.values()),
                               tool="ai_model_container.daemon.cli"))
    for variant, directory in dirs.items():
        assert f"INVALID {directory / 'model.yaml'}" in output and BAD_YAML[variant][1] in output, variant
    for variant in CRASHED_BEFORE:
        served = ruth("serve", str(dirs[variant]), "--socket-dir", str(socket_dir), tool="ai_model_container.daemon.cli")
        assert f"cannot start: {dirs[variant] / 'model.yaml'}" in assert_clean(served), variant
    shutil.copytree(EXAMPLE_MODEL_DIR, tmp_path / "models" / "good", ignore=shutil.ignore_patterns("__pycache__"))
    listed = assert_clean(ruth("discover", str(tmp_path / "models"), tool="ai_model_container.daemon.cli"), code=0)
    assert listed.count("INVALID ") == len(dirs) and "OK      example" in listed


def test_serve_all_serves_the_good_model_and_reports_the_bad_ones(tmp_path, socket_dir):
    root = tmp_path / "models"
    dirs = bad_model_dirs(root, (*CRASHED_BEFORE, "alias bomb"))
    good_id = unique_id("good")
    shutil.copytree(EXAMPLE_MODEL_DIR, root / "good", ignore=shutil.ignore_patterns("__pycache__"))
    config = yaml.safe_load((root / "good" / "model.yaml").read_text())
    (root / "good" / "model.yaml").write_text(yaml.safe_dump({**config, "model_id": good_id}))
    log_path = tmp_path / "serve-all.log"
    with log_path.open("wb") as log:
        supervisor = subprocess.Popen([sys.executable, "-m", "ai_model_container.daemon.cli", "serve-all", str(root),
                                       "--socket-dir", str(socket_dir)], stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True)
    try:
        def ready() -> bool:
            assert supervisor.poll() is None, log_path.read_text()
            try:
                with ModelClient(socket_path(good_id, str(socket_dir)), connect_timeout_s=0.5) as client:
                    return client.health().ready
            except ClientError:
                return False

        wait_for(ready, timeout_s=60, message="the good model's health")
        output = log_path.read_text()
        for variant, directory in dirs.items():
            assert f"skipping {directory / 'model.yaml'}: {directory / 'model.yaml'}:" in output, (variant, output)
        assert "Traceback" not in output, output
    finally:
        os.killpg(supervisor.pid, signal.SIGTERM)
        try:
            supervisor.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(supervisor.pid, signal.SIGKILL)
            supervisor.wait()


def test_ruth_ai_check_import_and_run_refuse_bad_files_cleanly(tmp_path, registry_path):
    good = tmp_path / "good.yaml"
    good.write_bytes(VALID_FILES["assignments"])
    registry = ["--registry", str(registry_path)]
    for variant in CRASHED_BEFORE:
        bad = tmp_path / f"assignments-{CRASHED_BEFORE.index(variant)}.yaml"
        bad.write_bytes(BAD_YAML[variant][0](VALID_FILES["assignments"]))
        output = assert_clean(ruth("check", str(bad), *registry))
        assert f"INVALID {bad}:" in output and BAD_YAML[variant][1] in output, variant
    bad_model = bad_model_dirs(tmp_path / "models", ["Latin-1 text"])["Latin-1 text"] / "model.yaml"
    assert f"cannot import: {bad_model}:" in assert_clean(ruth("models", "import", str(bad_model), *registry))
    nested = tmp_path / "nested.yaml"
    nested.write_bytes(BAD_YAML["100k nested brackets"][0](VALID_FILES["assignments"]))
    assert f"cannot start: {nested}:" in assert_clean(ruth("run", "--assignments", str(nested), *registry))
    routing = tmp_path / "routing.yaml"
    routing.write_bytes(BAD_YAML["5,000-digit integer"][0](VALID_FILES["routing"]))
    started = ruth("run", "--assignments", str(good), "--routing", str(routing), *registry)
    assert f"cannot start: {routing}:" in assert_clean(started)


def test_a_live_core_keeps_its_subscriptions_through_bad_reloads(start_daemon, register, feeder, core_process,
                                                                  tmp_path):
    """Rewrite a running Core's assignments (and routing) file with each bad variant: Core stays up on the
    old state, logs a clean error per file with no secret in it, and applies the next good file."""
    daemon = start_daemon()
    register(daemon)
    cam1, cam2 = unique_id("cam"), unique_id("cam")
    feeder(cam1).start()
    feeder(cam2).start()
    assignments, routing = tmp_path / "assignments.yaml", tmp_path / "routing.yaml"
    good = [{"camera": cam1, "model": daemon.model_id, "fps": 5}]
    write_assignments(assignments, good)
    routing.write_text("models: {}\n")
    core = core_process(assignments, routing=routing)
    core.wait_for_more_results(cam1, daemon.model_id)
    valid = assignments.read_bytes()
    schema_valid_bomb = (f"assignments:\n  - camera: {cam1}\n    model: {daemon.model_id}\n    fps: 5\n    config:\n"
                         + alias_bomb("      ")).encode()
    reloads = [(assignments, BAD_YAML[variant][0](valid)) for variant in BAD_YAML]
    reloads += [(assignments, schema_valid_bomb),
                (assignments, SECRET_SYNTAX_ERROR.format(camera=cam1, model=daemon.model_id).encode()),
                (routing, BAD_YAML["Latin-1 text"][0](b"models: {}\n")),
                (routing, BAD_YAML["100k nested brackets"][0](b"models: {}\n"))]
    for path, content in reloads:
        kept = core.log.count(f"keeping the current subscriptions: {path}:")
        previous = path.read_bytes()
        write_bytes_atomically(path, content)
        wait_for(lambda: core.log.count(f"keeping the current subscriptions: {path}:") > kept or not core.alive,
                 timeout_s=15, message=f"the reload of {path.name} to be refused")
        core.assert_serving()
        write_bytes_atomically(path, previous)  # the next bad file is then the only problem
    core.wait_for_more_results(cam1, daemon.model_id)
    write_assignments(assignments, [*good, {"camera": cam2, "model": daemon.model_id, "fps": 5}])
    core.wait_for_more_results(cam2, daemon.model_id)
    assert SECRET not in core.log and "Traceback" not in core.log, core.log[-4000:]
    assert core.stop() == 0, core.log[-3000:]


def test_a_daemons_invalid_metadata_is_reported_without_its_values(tmp_path, registry_path, model_id):
    """``ruth-ai models import --from-daemon`` validates what describe returns; the error names the field only."""
    sock = socket_path(model_id, str(tmp_path))
    fake = start_fake_daemon(sock, model_id, uid=os.geteuid(), gid=os.getegid())
    try:
        imported = ruth("models", "import", "--from-daemon", model_id, "--socket-dir", str(tmp_path),
                        "--registry", str(registry_path))
    finally:
        fake.kill()
        fake.wait()
    output = assert_clean(imported)
    assert "not a valid model.yaml: model_version:" in output, output
    assert FAKE_VERSION not in output, output
