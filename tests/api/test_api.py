"""The discovery API as a real process on both backends: reads, admin with and without the token, fail closed,
validation, an outage, and the OpenAPI document."""

import subprocess
import sys
import time

import pytest
from storage.helpers import model_config

from ruth_ai_core.storage.database import Database

from .conftest import TOKEN


def import_model(api, model_id, **changes):
    document = model_config(model_id, **changes).model_dump(mode="json")
    return api.admin("POST", "/v1/models", document)


def test_models_can_be_discovered_and_filtered(api):
    assert api.get("/v1/models") == (200, [])
    assert import_model(api, "det", tasks=("detection",))[0] == 201
    assert import_model(api, "pose", tasks=("pose", "detection"))[0] == 201
    assert api.admin("POST", "/v1/models/pose/disable")[0] == 200
    status, models = api.get("/v1/models")
    assert status == 200 and [(m["model_id"], m["enabled"]) for m in models] == [("det", True), ("pose", False)]
    assert [m["model_id"] for m in api.get("/v1/models?enabled=true")[1]] == ["det"]
    assert [m["model_id"] for m in api.get("/v1/models?enabled=false&task=detection")[1]] == ["pose"]
    assert api.get("/v1/models?task=pose")[1][0]["tasks"] == ["pose", "detection"]
    status, detail = api.get("/v1/models/det")
    assert status == 200 and detail["versions"] == ["1.0.0"] and detail["source"] == "api"
    assert detail["metadata"]["entry_point"] == "bright_regions:BrightRegionHandler"
    assert api.get("/v1/models/ghost")[0] == 404


def test_assignments_per_camera_and_per_node_and_what_a_disabled_model_does_to_them(api):
    import_model(api, "det")
    import_model(api, "pose")
    assert api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5, "node": "edge-1"})[0] == 200
    status, placed = api.admin("PUT", "/v1/assignments/lobby/pose", {"fps": 2, "config": {"threshold": 0.4}})
    assert status == 200 and placed["node"] == "edge-1" and placed["config"] == {"threshold": 0.4}
    assert api.admin("PUT", "/v1/assignments/gate/det", {"fps": 5, "node": "edge-2"})[0] == 200
    status, camera = api.get("/v1/cameras/lobby/assignments")
    assert status == 200 and camera["node"] == "edge-1"
    assert [(a["model_id"], a["fps"], a["runnable"]) for a in camera["assignments"]] == [("det", 5.0, True), ("pose", 2.0, True)]
    assert api.get("/v1/cameras/nowhere/assignments")[0] == 404
    assert [a["camera_id"] for a in api.get("/v1/nodes/edge-2/assignments")[1]["assignments"]] == ["gate"]
    assert api.get("/v1/nodes/edge-9/assignments") == (200, {"node": "edge-9", "assignments": []})
    assert api.get("/v1/nodes")[1] == [{"node": "edge-1", "cameras": 1, "assignments": 2},
                                       {"node": "edge-2", "cameras": 1, "assignments": 1}]
    api.admin("POST", "/v1/models/det/disable")
    listed = api.get("/v1/assignments?node=edge-1")[1]
    det = next(a for a in listed if a["model_id"] == "det")
    assert det["runnable"] is False and "disabled" in det["reason"]
    assert api.admin("DELETE", "/v1/assignments/lobby/pose")[0] == 204
    assert api.admin("DELETE", "/v1/assignments/lobby/pose")[0] == 404


def test_admin_writes_fail_closed_and_all_or_nothing(api):
    import_model(api, "det")
    import_model(api, "off")
    api.admin("POST", "/v1/models/off/disable")
    status, problem = api.admin("PUT", "/v1/assignments/lobby/ghost", {"fps": 5, "node": "edge-1"})
    assert status == 409 and "'ghost' is not in the registry" in problem["detail"]
    status, problem = api.admin("PUT", "/v1/assignments/lobby/off", {"fps": 5, "node": "edge-1"})
    assert status == 409 and "'off' is disabled" in problem["detail"]
    assert api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5})[0] == 409  # a new camera needs its node
    api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5, "node": "edge-1"})
    status, problem = api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5, "node": "edge-2"})
    assert status == 409 and "runs on node 'edge-1'" in problem["detail"]

    status, result = api.admin("PUT", "/v1/nodes/edge-1/assignments", {"assignments": [
        {"camera": "lobby", "model": "det", "fps": 10}, {"camera": "hall", "model": "det", "fps": 2}]})
    assert status == 200 and result["added"] == [{"camera_id": "hall", "model_id": "det"}]
    assert result["changed"] == [{"camera_id": "lobby", "model_id": "det"}]
    status, _ = api.admin("PUT", "/v1/nodes/edge-1/assignments", {"assignments": [
        {"camera": "lobby", "model": "det", "fps": 1}, {"camera": "hall", "model": "off", "fps": 2}]})
    assert status == 409
    assert [a["fps"] for a in api.get("/v1/nodes/edge-1/assignments")[1]["assignments"]] == [2.0, 10.0]
    status, _ = api.admin("PUT", "/v1/nodes/edge-1/assignments", {"assignments": [
        {"camera": "lobby", "model": "det", "fps": 1}, {"camera": "lobby", "model": "det", "fps": 2}]})
    assert status == 422  # one pair twice


@pytest.mark.parametrize("method, path, body", [
    ("POST", "/v1/models/det/disable", None),
    ("POST", "/v1/models/det/enable", None),
    ("PUT", "/v1/assignments/lobby/det", {"fps": 5, "node": "edge-1"}),
    ("DELETE", "/v1/assignments/lobby/det", None),
    ("PUT", "/v1/nodes/edge-1/assignments", {"assignments": []}),
])
def test_admin_calls_without_the_token_are_refused_and_change_nothing(api, method, path, body):
    import_model(api, "det")
    for token, expected in ((None, 401), ("wrong-token-000000000", 403), ("", 401)):
        status, problem, headers = api.call(method, path, body, token=token)
        assert status == expected, (token, status, problem)
        if expected == 401:
            assert headers.get("www-authenticate", headers.get("WWW-Authenticate")) == "Bearer"
    status, problem, _ = api.call(method, path, body, headers={"Authorization": f"Basic {TOKEN}"})
    assert status == 401
    assert api.get("/v1/models/det")[1]["enabled"] is True
    assert api.get("/v1/assignments")[1] == []
    status, _, _ = api.call("POST", "/v1/models", model_config("sneaky").model_dump(mode="json"))
    assert status == 401 and api.get("/v1/models/sneaky")[0] == 404


def test_without_a_configured_token_the_admin_api_is_off(make_api, database_url):
    api = make_api(database_url, token=None)
    status, problem, _ = api.call("POST", "/v1/models", model_config("m").model_dump(mode="json"), token=TOKEN)
    assert status == 403 and "disabled" in problem["detail"]
    assert api.get("/v1/models") == (200, [])


@pytest.mark.parametrize("path", [
    "/v1/models/x';DROP%20TABLE%20models;--", "/v1/models/" + "a" * 65, "/v1/cameras/a%20b/assignments",
    "/v1/nodes/-edge/assignments", "/v1/models?task=a;b", "/v1/assignments?node=a%00b", "/v1/models?enabled=maybe",
])
def test_malformed_ids_and_parameters_are_refused_before_the_database(api, path):
    assert api.get(path)[0] == 422
    assert api.get("/v1/health")[0] == 200


def test_malformed_admin_bodies_are_refused(api):
    import_model(api, "det")
    assert api.admin("PUT", "/v1/assignments/lobby/det", {"fps": -1, "node": "edge-1"})[0] == 422
    assert api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5, "node": "edge 1"})[0] == 422
    assert api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5, "nodes": "edge-1"})[0] == 422
    bad = model_config("det").model_dump(mode="json") | {"model_version": "one"}
    assert api.admin("POST", "/v1/models", bad)[0] == 422
    assert api.get("/v1/models/det")[1]["current_version"] == "1.0.0"


def test_an_unreachable_database_is_503_and_the_api_recovers(make_api, own_pg_cluster):
    url = own_pg_cluster.create_database()
    Database.open(url, upgrade=True).close()
    api = make_api(url)
    assert api.get("/v1/health")[1]["status"] == "ok"
    own_pg_cluster.stop()
    status, health = api.get("/v1/health")
    assert status == 503 and health["status"] == "unavailable" and health["database"]["reachable"] is False
    status, problem = api.get("/v1/models")
    assert status == 503 and "does not answer" in problem["detail"]
    assert api.admin("POST", "/v1/models/det/disable")[0] == 503
    own_pg_cluster.start()
    deadline = time.monotonic() + 10
    while api.get("/v1/health")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert api.get("/v1/models") == (200, [])


def test_the_api_refuses_to_start_on_bad_settings(tmp_path):
    from click.testing import CliRunner

    from ruth_ai_core.cli import main

    def api(*args, env=None):
        result = CliRunner().invoke(main, ["api", *args], env=env, catch_exceptions=False)
        return result.exit_code, result.output

    short = tmp_path / "short"
    short.write_text("abc\n")
    db = f"sqlite:///{tmp_path}/r.db"
    code, output = api("--database", db, "--admin-token-file", str(short))
    assert code == 2 and "at least 16 characters" in output
    code, output = api("--database", db, env={"RUTH_AI_ADMIN_TOKEN": "short"})
    assert code == 2 and "at least 16 characters" in output
    for listen in ("8090", ":8090", "localhost:http", "[nonsense]:8090", "127.0.0.1:70000"):
        code, output = api("--database", db, "--listen", listen)
        assert code == 2 and "--listen" in output, listen
    code, output = api("--database", "mysql://x@y/z")
    assert code == 2 and "unsupported database" in output
    code, output = api("--database", f"postgresql://postgres@/ruth_ai?host={tmp_path}&port=1")
    assert code == 3 and "does not answer" in output


def test_the_api_and_cores_data_path_do_not_load_each_other():
    code = ("import sys, ruth_ai_core.api.app; "
            "assert not {'ruth_ai_core.core', 'ruth_ai_core.agent', 'ruth_ai_core.router'} & set(sys.modules), "
            "sorted(m for m in sys.modules if m.startswith('ruth_ai_core'))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).returncode == 0
    code = ("import sys, ruth_ai_core.cli, ruth_ai_core.core, ruth_ai_core.storage.event_sink; "
            "assert 'fastapi' not in sys.modules and 'uvicorn' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_documents_no_backend_can_store_are_refused_the_same_way_on_both(api):
    import urllib.request

    import_model(api, "det")
    document = model_config("nul").model_dump(mode="json") | {"description": "a\u0000b"}
    status, problem = api.admin("POST", "/v1/models", document)
    assert status == 422 and "NUL" in problem["detail"][0]["msg"]
    status, problem = api.admin("PUT", "/v1/assignments/lobby/det", {"fps": 5, "node": "edge-1",
                                                                    "config": {"label": "x\u0000"}})
    assert status == 422 and "NUL" in problem["detail"][0]["msg"]
    raw = b'{"fps": 5, "node": "edge-1", "config": {"threshold": NaN}}'  # Python's JSON reader accepts NaN
    request = urllib.request.Request(api.url + "/v1/assignments/lobby/det", data=raw, method="PUT",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("NaN was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 422
    raw = b'{"fps": 5, "node": "edge-1", "config": {"label": "\\ud800"}}'  # an unpaired surrogate
    request = urllib.request.Request(api.url + "/v1/assignments/lobby/det", data=raw, method="PUT",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("an unpaired surrogate was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 422
    assert api.get("/v1/assignments")[1] == [] and api.get("/v1/models/nul")[0] == 404
