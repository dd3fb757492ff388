"""build.sh's own logic against a stand-in docker client (build.sh's DOCKER): no engine needed.

What it checks: a model or core build before its base image exists (and an air-gapped base build
before the local base exists) stops at once with the commands to run, before any wheelhouse is filled or
any build starts; after a build, exactly the images that build left untagged are removed, also
when the build fails. The docker suite runs the same paths against a real engine
(tests/docker/test_docker_template_readme.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BUILD_SH = REPO / "build.sh"
TEMPLATE = REPO / "models" / "_template"
RUNTIME_VERSION = subprocess.run([str(BUILD_SH), "version"], capture_output=True, text=True, check=True).stdout.strip()
BASE = f"ruth-ai/model-runtime:{RUNTIME_VERSION}"

STUB = """#!{python}
# A docker client that answers from a JSON state file and logs every call, one JSON list a line.
import json, os, sys
state = json.load(open(os.environ["STUB_STATE"]))
args = sys.argv[1:]
with open(os.environ["STUB_LOG"], "a") as log:
    log.write(json.dumps(args) + "\\n")
if args[:2] == ["image", "inspect"]:
    image = state["images"].get(args[-1])
    if image is None:
        sys.exit(1)
    if "--format" in args:
        print(image["id"] if ".Id" in args[args.index("--format") + 1] else image["tags"])
    sys.exit(0)
if args[:1] == ["build"]:
    sys.stdout.write(state.get("build_output", ""))
    sys.stderr.write(state.get("build_errors", ""))  # Docker prints a failed pull on stderr
    sys.exit(state.get("build_status", 0))
if args[:1] == ["rmi"]:
    sys.exit(0 if state["images"].get(args[1], {{}}).get("removable", True) else 1)
sys.exit(f"stub docker: unexpected call {{args}}")
"""


class StubDocker:
    def __init__(self, directory: Path) -> None:
        self.executable = directory / "docker"
        self.executable.write_text(STUB.format(python=sys.executable))
        self.executable.chmod(0o755)
        self.state_path = directory / "state.json"
        self.log_path = directory / "calls.log"
        self.set_state(images={})

    def set_state(self, **state: object) -> None:
        self.state_path.write_text(json.dumps(state))

    def run(self, *arguments: str) -> subprocess.CompletedProcess:
        return self.run_with({}, *arguments)

    def run_with(self, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess:
        inherited = {key: value for key, value in os.environ.items() if key not in ("RUNTIME_TAG", "LOCAL_BASE_IMAGE")}
        env = {**inherited, "DOCKER": str(self.executable), "STUB_STATE": str(self.state_path),
               "STUB_LOG": str(self.log_path), "LOCAL_BASE_IMAGE": "local/stub-base:test", **env}
        return subprocess.run([str(BUILD_SH), *arguments], cwd=REPO, env=env, capture_output=True, text=True,
                              timeout=120)

    @property
    def calls(self) -> list[list[str]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines()]

    def calls_of(self, command: str) -> list[list[str]]:
        return [call for call in self.calls if call[0] == command]


@pytest.fixture
def docker(tmp_path: Path) -> StubDocker:
    return StubDocker(tmp_path)


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A copy of the template, so build.sh's wheelhouse handling never touches the repository."""
    directory = tmp_path / "models" / "stub-model"
    shutil.copytree(TEMPLATE, directory, ignore=shutil.ignore_patterns(".wheelhouse", "__pycache__"))
    return directory


@pytest.mark.parametrize("options", [[], ["--air-gapped"]], ids=["online", "air-gapped"])
def test_a_model_before_its_base_image_says_how_to_build_the_base(docker: StubDocker, model_dir: Path,
                                                                   options: list[str]) -> None:
    result = docker.run(*options, "model", str(model_dir))
    assert result.returncode == 2
    assert f"the base image {BASE} is missing ({model_dir} builds FROM it); build it first, once:" in result.stderr
    assert "./build.sh base " in result.stderr
    assert "./build.sh local-base && ./build.sh --air-gapped base" in result.stderr
    assert docker.calls_of("build") == [], "no build starts"
    assert not (model_dir / ".wheelhouse").exists(), "no wheelhouse is filled"


@pytest.mark.parametrize("options", [[], ["--air-gapped"]], ids=["online", "air-gapped"])
def test_core_before_its_base_image_says_how_to_build_the_base(docker: StubDocker, options: list[str]) -> None:
    wheelhouse = REPO / "core-image" / ".wheelhouse"
    existed = wheelhouse.exists()
    result = docker.run(*options, "core")
    assert result.returncode == 2
    assert f"the base image {BASE} is missing ({REPO / 'core-image'} builds FROM it); build it first, once:" in result.stderr
    assert "./build.sh local-base && ./build.sh --air-gapped base" in result.stderr
    assert docker.calls_of("build") == [], "no build starts"
    assert wheelhouse.exists() == existed, "no wheelhouse is filled"


def test_the_usage_names_every_image_build_sh_builds() -> None:
    usage = subprocess.run([str(BUILD_SH), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("base ", "model DIR...", "core ", "all ", "wheelhouse base|core|DIR"):
        assert f"\n  {command}" in usage, command
    assert "ruth-ai/core:<core version>" in usage


def test_an_air_gapped_base_before_the_local_base_says_to_make_it(docker: StubDocker) -> None:
    result = docker.run("--air-gapped", "base")
    assert result.returncode == 2
    assert "the air-gapped base local/stub-base:test is missing" in result.stderr
    assert "./build.sh local-base" in result.stderr
    assert docker.calls_of("build") == []


BUILD_LOG = """Step 1/9 : ARG RUNTIME_VERSION
Step 2/9 : FROM ruth-ai/model-runtime:0 AS install
 ---> 111111111111
Step 3/9 : COPY . /build/
 ---> 222222222222
Step 4/9 : RUN OFFLINE=$OFFLINE ruth-install-model /build
 ---> Running in 999999999999
Removing intermediate container 999999999999
 ---> 333333333333
Step 5/9 : FROM ruth-ai/model-runtime:0
 ---> 111111111111
Step 6/9 : COPY --from=install /opt/ruth-ai/ /opt/ruth-ai/
 ---> Using cache
 ---> 444444444444
Step 7/9 : LABEL org.opencontainers.image.title="ruth-ai/stub-model"
 ---> 555555555555
Successfully built 555555555555
"""

IMAGES_AFTER_THE_BUILD = {
    BASE: {"id": "sha256:base", "tags": 2},
    "ruth-ai/template:0.1.0": {"id": "sha256:old", "tags": 2},  # what the tag named before the build
    "ruth-ai/template:latest": {"id": "sha256:old", "tags": 2},
    "sha256:old": {"id": "sha256:old", "tags": 0},  # untagged by the build
    "111111111111": {"id": "sha256:base", "tags": 2},  # the base image: tagged
    "222222222222": {"id": "sha256:copy", "tags": 0, "removable": False},  # has a child
    "333333333333": {"id": "sha256:stage", "tags": 0},  # the install stage: what is left behind
    "444444444444": {"id": "sha256:final-copy", "tags": 0, "removable": False},  # the final image's layer
    "555555555555": {"id": "sha256:new", "tags": 2},  # the new image
}


@pytest.mark.parametrize("status", [0, 1], ids=["success", "failure"])
def test_after_a_build_only_what_it_left_untagged_is_removed(docker: StubDocker, model_dir: Path,
                                                             status: int) -> None:
    docker.set_state(images=IMAGES_AFTER_THE_BUILD, build_output=BUILD_LOG, build_status=status)
    result = docker.run("model", str(model_dir))
    (build,) = docker.calls_of("build")
    assert build[-1] == str(model_dir) and "ruth-ai/template:0.1.0" in build and "ruth-ai/template:latest" in build
    removed = [call[1] for call in docker.calls_of("rmi")]
    # Newest step first, so a stage goes before the layers under it; never a tagged image.
    assert removed == ["444444444444", "333333333333", "222222222222", "sha256:old"]
    assert all(IMAGES_AFTER_THE_BUILD[image]["tags"] == 0 for image in removed)
    assert "Successfully built 555555555555" in result.stdout, "the build's output is shown as it runs"
    assert "removed 2 untagged image(s)" in result.stderr
    if status == 0:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2
        assert f"docker build of {model_dir} failed (exit 1)" in result.stderr


def test_runtime_tag_names_the_base_image_models_build_from(docker: StubDocker, model_dir: Path) -> None:
    docker.set_state(images={"ruth-ai/model-runtime:mine": {"id": "sha256:mine", "tags": 1}})
    assert docker.run("model", str(model_dir)).returncode == 2, "the default tag is not there"
    result = docker.run_with({"RUNTIME_TAG": "mine"}, "model", str(model_dir))
    assert result.returncode == 0, result.stderr
    (build,) = docker.calls_of("build")
    assert "RUNTIME_VERSION=mine" in build


REGISTRY_FAILURE = """Step 2/9 : FROM ${BASE_IMAGE} AS install
Get "https://registry-1.docker.io/v2/": dial tcp: lookup registry-1.docker.io: no such host
"""


def test_an_unreachable_registry_names_the_air_gapped_command(docker: StubDocker, model_dir: Path) -> None:
    docker.set_state(images={BASE: {"id": "sha256:base", "tags": 2}}, build_output=REGISTRY_FAILURE.splitlines()[0],
                     build_errors=REGISTRY_FAILURE.splitlines()[1], build_status=1)
    result = docker.run("model", str(model_dir))
    assert result.returncode == 2
    assert "the image registry is not reachable from here" in result.stderr
    assert f"./build.sh local-base && ./build.sh --air-gapped model {model_dir}" in result.stderr
    assert "registry-1.docker.io" in result.stdout, "Docker's own words stay visible above"
