"""Every object of every target (the base and each overlay) is valid Kubernetes, checked with no cluster.

kubectl's kustomize renders the target, then kubernetes-validate checks each object against the
strict JSON schemas of KUBERNETES_VERSION (an unknown field is an error, as `kubectl apply
--validate=strict` would say). A broken manifest rendered the same way must fail, or these tests
could not fail at all.
"""

from __future__ import annotations

import os
from pathlib import Path

import kubernetes_validate
import pytest
from k8s_manifests import BASE, KUBERNETES_VERSION, TARGETS, render, render_uncached


def validate(obj: dict) -> None:
    kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_object_is_valid_kubernetes(target: str) -> None:
    objects = render(target)
    assert objects, f"{target} renders nothing"
    for obj in objects:
        validate(obj)
        assert obj["metadata"].get("namespace", "ruth-ai") == "ruth-ai", f"{obj['kind']}/{obj['metadata']['name']}"


def test_the_overlays_tested_are_the_overlays_there() -> None:
    assert set(TARGETS) == {"base", "demo", "site-example"}, "a new overlay: say here what it must contain"


BROKEN_PATCHES = {
    "unknown field": """
- op: add
  path: /spec/template/spec/containers/0/readinessProbes
  value: {exec: {command: [ruth-model, health]}}
""",
    "wrong type": """
- op: replace
  path: /spec/template/spec/containers/0/ports/0/containerPort
  value: metrics
""",
}


@pytest.mark.parametrize("mistake", sorted(BROKEN_PATCHES))
def test_a_broken_overlay_fails_validation(tmp_path: Path, mistake: str) -> None:
    (tmp_path / "patch.yaml").write_text(BROKEN_PATCHES[mistake])
    (tmp_path / "kustomization.yaml").write_text(f"""
resources: [{os.path.relpath(BASE, tmp_path)}]  # kustomize refuses absolute paths
patches:
  - path: patch.yaml
    target: {{kind: DaemonSet, name: ruth-ai-core}}
""")
    (broken,) = [obj for obj in render_uncached(tmp_path) if obj["metadata"]["name"] == "ruth-ai-core"]
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(broken)
