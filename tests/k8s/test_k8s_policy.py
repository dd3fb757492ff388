"""What the manifests promise about how Ruth AI runs, checked on the rendered objects of every target.

Hardening (non-root uid 10001, read-only root, no capabilities, no privilege escalation, the
runtime's seccomp profile), the node's sockets and /dev/shm shared by hostPath, health through the
daemon's own health op, GPU models on GPU nodes and their CPU twins everywhere else, Core's node
and database from the downward API and a Secret, and Prometheus annotations that match real ports.
"""

from __future__ import annotations

import pytest
from k8s_manifests import (
    RUTH_GID,
    RUTH_UID,
    TARGETS,
    all_containers,
    env_of,
    is_core,
    is_model,
    is_ruth_image,
    model_id_of,
    mount_path,
    pod_objects,
    pod_spec,
    render,
)

SOCKET_DIR = "/run/ruth-ai"
SHM = "/dev/shm"
GPU_LABEL = "nvidia.com/gpu.present"
GPU = "nvidia.com/gpu"

targets = pytest.mark.parametrize("target", sorted(TARGETS))


def label(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


@targets
def test_every_container_is_locked_down(target: str) -> None:
    for obj in pod_objects(render(target)):
        spec = pod_spec(obj)
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True, label(obj)
        assert pod["seccompProfile"] == {"type": "RuntimeDefault"}, label(obj)
        assert spec["automountServiceAccountToken"] is False, label(obj)
        for container in all_containers(spec):
            context = container["securityContext"]
            where = f"{label(obj)} {container['name']}"
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert not context.get("privileged"), where
            if is_ruth_image(container["image"]):
                assert context.get("runAsUser", pod["runAsUser"]) == RUTH_UID, where
                assert context.get("runAsGroup", pod["runAsGroup"]) == RUTH_GID, where


@targets
def test_models_and_core_share_the_nodes_sockets_and_shared_memory(target: str) -> None:
    users = 0
    for obj in pod_objects(render(target)):
        spec = pod_spec(obj)
        for container in spec["containers"]:
            if not (is_model(container) or is_core(container)) or obj["kind"] != "DaemonSet":
                continue
            users += 1
            volumes = {volume["name"]: volume for volume in spec["volumes"]}
            assert volumes["sockets"]["hostPath"] == {"path": SOCKET_DIR, "type": "Directory"}, label(obj)
            assert volumes["shm"]["hostPath"] == {"path": SHM, "type": "Directory"}, label(obj)
            assert mount_path(spec, container, SHM) == SHM
            mounts = {mount["name"]: mount for mount in container["volumeMounts"]}
            assert mounts["shm"]["readOnly"] is True, "rings are only ever read here"
            assert env_of(container)["VAS_MODEL_SOCKET_DIR"]["value"] == mount_path(spec, container, SOCKET_DIR)
    assert users == 4, "core, fall-detection and face-detection's GPU and CPU DaemonSets"


@targets
def test_model_probes_run_the_health_op_of_their_own_model(target: str) -> None:
    for obj in pod_objects(render(target)):
        spec = pod_spec(obj)
        for container in filter(is_model, spec["containers"]):
            socket_dir = mount_path(spec, container, SOCKET_DIR)
            expected = ["ruth-model", "health", model_id_of(container["image"]), "--socket-dir", socket_dir]
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = container[probe]["exec"]["command"]
                assert command[:5] == expected, f"{label(obj)} {probe}: {command}"
                assert container[probe]["timeoutSeconds"] > float(command[command.index("--timeout") + 1])


def node_placement(spec: dict) -> str:
    """any, gpu (the GPU label required) or cpu (nodes without it): where a DaemonSet's pods may run."""
    if spec.get("nodeSelector", {}).get(GPU_LABEL) == "true":
        return "gpu"
    terms = spec.get("affinity", {}).get("nodeAffinity", {}).get("requiredDuringSchedulingIgnoredDuringExecution", {})
    expressions = [e for term in terms.get("nodeSelectorTerms", []) for e in term["matchExpressions"]]
    if {"key": GPU_LABEL, "operator": "NotIn", "values": ["true"]} in expressions:
        return "cpu"
    assert not spec.get("nodeSelector") and not expressions, "a placement this test does not know"
    return "any"


@targets
def test_gpu_models_run_on_gpu_nodes_and_their_cpu_twins_everywhere_else(target: str) -> None:
    placements: dict[str, list[str]] = {}
    for obj in pod_objects(render(target)):
        spec = pod_spec(obj)
        for container in filter(is_model, spec["containers"]):
            placement = node_placement(spec)
            placements.setdefault(model_id_of(container["image"]), []).append(placement)
            gpus = container["resources"].get("limits", {}).get(GPU)
            device = env_of(container)["RUTH_DEVICE"]["value"]
            assert obj["kind"] == "DaemonSet", label(obj)
            if placement == "gpu":
                assert gpus == 1 and device == "cuda", label(obj)
                assert {"key": GPU, "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
            else:
                assert gpus is None and device == "cpu", label(obj)
    # Every node runs each model exactly once: one DaemonSet everywhere, or a GPU one and its CPU twin.
    assert placements == {"fall-detection": ["any"], "face-detection": ["cpu", "gpu"]}, placements


@targets
def test_core_runs_its_own_nodes_assignments_from_the_database_secret(target: str) -> None:
    ruth_containers = 0
    for obj in pod_objects(render(target)):
        for container in all_containers(pod_spec(obj)):
            if not is_core(container):
                continue
            ruth_containers += 1
            env = env_of(container)
            assert env["RUTH_AI_DATABASE"]["valueFrom"]["secretKeyRef"] == {"name": "ruth-ai-database", "key": "url"}
            assert "--database" not in container["args"], "the URL holds a password: never in argv"
            if container["args"][0] == "run":
                assert obj["kind"] == "DaemonSet"
                args = container["args"]
                assert args[args.index("--node") + 1] == "$(NODE_NAME)"
                assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
                assert args[args.index("--event-sink") + 1] == "database"
    assert ruth_containers == 3, "core's run, the API's db upgrade and api"


def container_ports(spec: dict) -> dict[str, int]:
    return {p["name"]: p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}


@targets
def test_every_metrics_endpoint_is_annotated_for_prometheus_on_its_real_port(target: str) -> None:
    scraped = 0
    for obj in pod_objects(render(target)):
        spec = pod_spec(obj)
        annotations = obj["spec"]["template"]["metadata"].get("annotations", {})
        served = [c for c in spec["containers"] if "--metrics-port" in c.get("args", [])]
        if annotations.get("prometheus.io/scrape") != "true":
            assert not served, f"{label(obj)} serves metrics that nothing scrapes"
            continue
        scraped += 1
        port = int(annotations["prometheus.io/port"])
        assert annotations["prometheus.io/path"] == "/metrics"
        assert port in container_ports(spec).values(), f"{label(obj)}: no container port {port}"
        for container in served:
            args = container["args"]
            assert int(args[args.index("--metrics-port") + 1]) == port
            assert args[args.index("--metrics-addr") + 1] == "0.0.0.0", "reachable from Prometheus, not loopback only"
    assert scraped == 1, "Ruth AI Core; the API has no metrics endpoint"


@targets
def test_every_service_reaches_a_named_port_of_the_pods_it_selects(target: str) -> None:
    objects = render(target)
    pods = {tuple(sorted(obj["spec"]["template"]["metadata"]["labels"].items())): pod_spec(obj) for obj in pod_objects(objects)}
    for service in (obj for obj in objects if obj["kind"] == "Service"):
        selector = service["spec"]["selector"].items()
        matching = [spec for labels, spec in pods.items() if selector <= dict(labels).items()]
        assert len(matching) == 1, label(service)
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in container_ports(matching[0]), f"{label(service)} {port}"
