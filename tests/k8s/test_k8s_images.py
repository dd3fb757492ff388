"""Every image the manifests name is one build.sh builds, at the tag it gives; site-example moves them all.

build.sh tags ruth-ai/core:<packages/ruth-ai-core version> and ruth-ai/<model_id>:<model_version>
for every models/*/ with a Dockerfile; a manifest naming anything else would pull an image nobody
built. Only the demo overlay brings a third-party image (its PostgreSQL).
"""

from __future__ import annotations

import re

from k8s_manifests import REPO, SITE_REGISTRY, all_containers, pod_objects, pod_spec, render

from ai_model_container.contract.model_config import load_model_config

DEMO_ONLY_IMAGES = {"postgres:16-bookworm"}


def version_in(pyproject: str) -> str:
    """The version line build.sh reads (project_version)."""
    return re.search(r'^version = "([^"]*)"$', (REPO / pyproject).read_text(), re.MULTILINE).group(1)


def built_by_build_sh() -> set[str]:
    images = {f"ruth-ai/core:{version_in('packages/ruth-ai-core/pyproject.toml')}"}
    for dockerfile in (REPO / "models").glob("*/Dockerfile"):
        config = load_model_config(dockerfile.parent / "model.yaml")
        images.add(f"ruth-ai/{config.model_id}:{config.model_version}")
    return images


def images(target: str) -> set[str]:
    return {c["image"] for obj in pod_objects(render(target)) for c in all_containers(pod_spec(obj))}


def test_the_base_names_only_images_build_sh_builds() -> None:
    assert images("base") <= built_by_build_sh(), images("base") - built_by_build_sh()
    assert {"ruth-ai/core:0.2.0"} <= images("base")


def test_the_demo_adds_only_its_database() -> None:
    assert images("demo") - images("base") == DEMO_ONLY_IMAGES


def test_site_example_pulls_every_image_from_the_site_registry_at_the_same_tag() -> None:
    assert images("site-example") == {SITE_REGISTRY + image for image in images("base")}
