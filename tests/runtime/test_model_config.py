"""model.yaml validation, weight checksums, model discovery, device selection, and refusals to start."""

from __future__ import annotations

import hashlib

import pytest
import yaml

from ai_model_container.contract.model_config import ModelConfigError, Resources, load_model_config
from ai_model_container.daemon.discovery import discover_models
from ai_model_container.device import DEVICE_ENV, detect_gpu, select_device

from .conftest import MODEL_FIELDS

EXIT_CONFIG = 2
no_gpu = pytest.mark.skipif(detect_gpu() is not None, reason="needs a host without a GPU")

FIELD_ERRORS = {
    "negative timeout": ({"limits": {"timeout_ms": -5}}, "limits.timeout_ms"),
    "typo in limits": ({"limits": {"timeout": 50}}, "limits.timeout: Extra inputs are not permitted"),
    "version not semver": ({"model_version": "1.0"}, "model_version"),
    "model_id with a space": ({"model_id": "my model"}, "model_id"),
    "entry point without class": ({"entry_point": "handler"}, "entry_point"),
    "unknown device": ({"resources": {"device": "tpu"}}, "resources.device"),
    "no classes": ({"output_schema": {"classes": []}}, "output_schema.classes"),
    "weights outside the model": ({"weights": [{"path": "../w.bin", "sha256": "0" * 64}]}, "weights.0.path"),
    "malformed sha256": ({"weights": [{"path": "w.bin", "sha256": "abc"}]}, "weights.0.sha256"),
    "input format": ({"input_format": "RGB"}, "input_format"),
}


def write_yaml(path, content):
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


@pytest.mark.parametrize("change, field", FIELD_ERRORS.values(), ids=FIELD_ERRORS.keys())
def test_validation_errors_name_the_file_and_the_field(tmp_path, change, field):
    path = write_yaml(tmp_path / "model.yaml", {**MODEL_FIELDS, **change})
    with pytest.raises(ModelConfigError) as error:
        load_model_config(path)
    assert str(error.value).startswith(str(path)) and field in str(error.value)


@pytest.mark.parametrize("content, reason", [
    ("model_id: [unclosed", "not valid YAML"),
    ("- a list\n- of things\n", "top level must be a mapping"),
    ({key: value for key, value in MODEL_FIELDS.items() if key != "model_name"}, "model_name: Field required"),
])
def test_unusable_files_are_explained(tmp_path, content, reason):
    with pytest.raises(ModelConfigError, match=reason):
        load_model_config(write_yaml(tmp_path / "model.yaml", content))


def test_missing_file_is_explained(tmp_path):
    with pytest.raises(ModelConfigError, match="cannot read"):
        load_model_config(tmp_path / "model.yaml")


def _model_with_weights(controlled_model, listed: bytes, on_disk: bytes | None):
    directory = controlled_model(weights=[{"path": "weights/model.bin", "sha256": hashlib.sha256(listed).hexdigest()}])
    if on_disk is not None:
        (directory / "weights").mkdir()
        (directory / "weights" / "model.bin").write_bytes(on_disk)
    return directory


def test_weights_matching_their_sha256_are_served(start_daemon, controlled_model):
    daemon = start_daemon(_model_with_weights(controlled_model, b"real weights", b"real weights"))
    with daemon.client() as client:
        assert client.describe().model["weights"][0]["path"] == "weights/model.bin"


@pytest.mark.parametrize("on_disk, reason", [
    (b"tampered weights", "refusing to start"),
    (None, "is missing"),
], ids=["sha256 mismatch", "file missing"])
def test_bad_weights_refuse_to_start(spawn_daemon, controlled_model, on_disk, reason):
    daemon = spawn_daemon(_model_with_weights(controlled_model, b"real weights", on_disk))
    assert daemon.process.wait(20) == EXIT_CONFIG
    assert "cannot start" in daemon.log and reason in daemon.log and "model.bin" in daemon.log
    assert not daemon.socket.exists()


BROKEN_HANDLERS = {
    "module missing": ({"entry_point": "no_such_module:Handler"}, None, "cannot import 'no_such_module'"),
    "not a handler": ({"entry_point": "plain:Handler"}, "class Handler:\n    pass\n", "is not an InferenceHandler"),
    "load fails": ({"entry_point": "failing:Handler"},
                   "from controlled_handler import Handler as Base\n\n"
                   "class Handler(Base):\n    def load(self):\n        raise OSError('no such weights')\n",
                   "loading the model failed: OSError: no such weights"),
}


@pytest.mark.parametrize("fields, source, reason", BROKEN_HANDLERS.values(), ids=BROKEN_HANDLERS.keys())
def test_handler_that_cannot_load_refuses_to_start(spawn_daemon, controlled_model, fields, source, reason):
    directory = controlled_model(**fields)
    if source is not None:
        module = fields["entry_point"].split(":")[0]
        (directory / f"{module}.py").write_text(source)
    daemon = spawn_daemon(directory)
    assert daemon.process.wait(20) == EXIT_CONFIG
    assert reason in daemon.log and "Traceback" not in daemon.log


def test_invalid_model_id_override_refuses_to_start(spawn_daemon, controlled_model):
    daemon = spawn_daemon(controlled_model(), model_id="bad id!")
    assert daemon.process.wait(20) == EXIT_CONFIG
    assert "bad id!" in daemon.log and "Traceback" not in daemon.log


def test_discovery_keeps_valid_models_and_reports_invalid_ones(tmp_path):
    root = tmp_path / "models"
    for name, fields in {
        "alpha": {"model_id": "alpha"},
        "beta": {"model_id": "beta"},
        "broken": {"model_id": "broken", "limits": {"timeout_ms": 0}},
        "twin": {"model_id": "alpha"},
    }.items():
        (root / name).mkdir(parents=True)
        write_yaml(root / name / "model.yaml", {**MODEL_FIELDS, **fields})
    (root / "no_yaml_here").mkdir()
    write_yaml(root / "garbage.yaml", "not: [valid")
    result = discover_models(root)
    assert [model.config.model_id for model in result.models] == ["alpha", "beta"]
    assert [model.directory.name for model in result.models] == ["alpha", "beta"]
    reasons = {path.parent.name: reason for path, reason in result.invalid}
    assert set(reasons) == {"broken", "twin"}
    assert "limits.timeout_ms" in reasons["broken"]
    assert "already defined" in reasons["twin"] and "alpha" in reasons["twin"]


def test_discovery_of_a_missing_root_says_so(tmp_path):
    result = discover_models(tmp_path / "nowhere")
    assert result.models == [] and "does not exist" in result.invalid[0][1]


@no_gpu
@pytest.mark.parametrize("resources, environ, expected", [
    ({"device": "cpu"}, {}, "cpu"),
    ({"device": "auto"}, {}, "cpu"),
    ({"device": "cuda", "cpu_fallback": True}, {}, "cpu"),
    ({"device": "cuda", "cpu_fallback": False}, {}, "none"),
    ({"device": "auto", "cpu_fallback": False}, {}, "none"),
    ({"device": "cuda", "cpu_fallback": False}, {DEVICE_ENV: "cpu"}, "cpu"),
    ({"device": "cpu", "cpu_fallback": False}, {DEVICE_ENV: "cuda"}, "none"),
    ({"device": "cpu", "cpu_fallback": False}, {DEVICE_ENV: " CPU "}, "cpu"),
])
def test_device_selection_on_a_host_without_gpu(resources, environ, expected):
    device = select_device(Resources(**resources), environ)
    assert device.kind == expected
    assert (device.degraded_reason is not None) == (expected == "none")


def test_unknown_device_in_the_environment_is_an_error():
    with pytest.raises(ValueError, match=DEVICE_ENV):
        select_device(Resources(), {DEVICE_ENV: "tpu"})


@no_gpu
def test_environment_lets_a_gpu_only_model_run_on_the_cpu(start_daemon, controlled_model):
    daemon = start_daemon(controlled_model(resources={"device": "cuda", "cpu_fallback": False}),
                          env={DEVICE_ENV: "cpu"})
    with daemon.client() as client:
        health = client.health()
    assert health.ready and health.device == "cpu"


def test_unknown_device_in_the_environment_refuses_to_start(spawn_daemon, controlled_model):
    daemon = spawn_daemon(controlled_model(), env={DEVICE_ENV: "tpu"})
    assert daemon.process.wait(20) == EXIT_CONFIG
    assert "RUTH_DEVICE='tpu'" in daemon.log and "Traceback" not in daemon.log
