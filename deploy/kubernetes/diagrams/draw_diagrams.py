"""Draws node.svg and cluster.svg for deploy/kubernetes/README.md: `.venv/bin/python draw_diagrams.py`.

Plain matplotlib boxes and arrows, so the pictures change with the manifests in the same commit.
The SVGs are written without a date and with fixed ids, so redrawing unchanged pictures changes nothing.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen first)
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

HERE = Path(__file__).resolve().parent
plt.rcParams.update({"svg.fonttype": "none", "svg.hashsalt": "ruth-ai", "font.family": "DejaVu Sans", "font.size": 9})

POD = "#dbe9f6"
HOST = "#f3f3f3"
SHARED = "#fff2cc"
GPU = "#d9ead3"
EXTERNAL = "#fce5cd"


def box(ax, x, y, w, h, text, color, *, bold=False, top=False, size=9):
    ax.add_patch(FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0,rounding_size=0.15", facecolor=color,
                                edgecolor="#555555", linewidth=1))
    ax.text(x + w / 2, y + h - 0.25 if top else y + h / 2, text, ha="center", va="top" if top else "center",
            fontweight="bold" if bold else "normal", fontsize=size)


def arrow(ax, start, end, text="", *, both=False, dashed=False, offset=(0, 0.15)):
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="<|-|>" if both else "-|>", mutation_scale=10,
                                 linewidth=1, color="#333333", linestyle="--" if dashed else "-"))
    if text:
        ax.text((start[0] + end[0]) / 2 + offset[0], (start[1] + end[1]) / 2 + offset[1], text, ha="center",
                fontsize=7.5, color="#333333")


def canvas(width, height):
    figure, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(0, width * 2)
    ax.set_ylim(0, height * 2)
    ax.axis("off")
    return figure, ax


def save(figure, name):
    figure.savefig(HERE / name, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)


def draw_node():
    figure, ax = canvas(9, 5.6)
    box(ax, 0.2, 0.2, 17.6, 10.8, "one node (a GPU node; a CPU node runs face-detection-cpu instead)", HOST, bold=True, top=True)
    box(ax, 0.6, 7.2, 3.8, 2.6, "VAS\n(on the host)\ndecodes cameras,\nwrites NV12 rings", EXTERNAL)
    box(ax, 5.6, 7.4, 6.4, 2.2, "hostPath /dev/shm\nvas_frames_<camera>\nrings, 0640, group 10001", SHARED)
    box(ax, 5.6, 0.6, 6.4, 2.2, "hostPath /run/ruth-ai\n(2770, group 10001)\nvas_model_<model_id>.sock", SHARED)
    box(ax, 0.5, 3.6, 5.0, 2.6, "pod ruth-ai-core (DaemonSet)\nruth-ai run --node $(NODE_NAME)\n"
                                ":9464 /metrics: Prometheus\nPostgreSQL: assignments, events", POD, size=8)
    box(ax, 6.2, 3.6, 5.2, 2.6, "pod fall-detection\n(DaemonSet, CPU)\nruth-serve\nprobe: ruth-model health", POD, size=8)
    box(ax, 12.0, 3.6, 5.5, 2.6, "pod face-detection-gpu\n(DaemonSet, GPU nodes)\n"
                                 "ruth-serve, RUTH_DEVICE=cuda\nprobe: ruth-model health", POD, size=8)
    box(ax, 13.0, 0.6, 3.6, 1.6, "GPU\nnvidia.com/gpu: 1", GPU, size=8)
    box(ax, 13.0, 7.4, 4.4, 2.2, "node label\nnvidia.com/gpu.present=true\n(NVIDIA device plugin)", GPU, size=8)
    arrow(ax, (4.4, 8.5), (5.6, 8.5), "writes")
    arrow(ax, (3.0, 6.2), (6.6, 7.4), "reads (ro)", offset=(-1.0, 0.1))
    arrow(ax, (8.8, 6.2), (8.8, 7.4), "reads (ro)", offset=(0.9, -0.1))
    arrow(ax, (13.6, 6.2), (12.0, 7.6), "reads (ro)", offset=(0.9, 0.0))
    arrow(ax, (3.0, 3.6), (6.4, 2.4), "connects", offset=(-0.8, -0.1))
    arrow(ax, (8.8, 3.6), (8.8, 2.8), "binds", offset=(0.6, -0.15))
    arrow(ax, (13.6, 3.6), (12.0, 2.0), "binds", offset=(-0.2, 0.35))
    arrow(ax, (14.8, 3.6), (14.8, 2.2), both=True)
    arrow(ax, (15.2, 7.4), (15.2, 6.2), "selects", offset=(0.6, 0))
    ax.text(9.0, -0.35, "every pod: uid 10001, read-only root, capabilities dropped, no privilege escalation, "
            "seccomp RuntimeDefault; model pods have no network", ha="center", fontsize=7.5)
    save(figure, "node.svg")


def draw_cluster():
    figure, ax = canvas(9, 5.6)
    box(ax, 0.2, 0.2, 17.6, 10.8, "cluster, namespace ruth-ai", HOST, bold=True, top=True)
    nodes = [("GPU node", "face-detection-gpu\nGPU"), ("CPU node", "face-detection-cpu\n"), ("CPU node", "face-detection-cpu\n")]
    for index, (name, face) in enumerate(nodes):
        x = 0.6 + index * 3.9
        box(ax, x, 5.0, 3.6, 4.8, f"{name}\n\nVAS\nruth-ai-core\nfall-detection\n{face}\n/dev/shm, /run/ruth-ai", POD, size=8)
    box(ax, 13.0, 7.6, 4.4, 2.2, "Deployment ruth-ai-api\n2 replicas, ruth-ai api\ninit: ruth-ai db upgrade", POD, size=8)
    box(ax, 13.0, 5.0, 4.4, 1.8, "Service ruth-ai-api :8090\n/v1/models, /v1/nodes/...", SHARED, size=8)
    box(ax, 0.6, 0.8, 5.0, 2.6, "Prometheus\nscrapes the pods annotated\n"
                                "prometheus.io/scrape:\nevery core, :9464 /metrics", EXTERNAL, size=8)
    box(ax, 6.4, 0.8, 5.4, 2.6, "PostgreSQL\nyours, or overlays/demo's\n"
                                "StatefulSet + Service;\nURL in Secret ruth-ai-database", EXTERNAL, size=8)
    box(ax, 13.0, 0.8, 4.4, 2.6, "clients\n(operators, tools)", EXTERNAL, size=8)
    for index in range(3):
        x = 2.4 + index * 3.9
        arrow(ax, (x + 0.5, 5.0), (9.1, 3.4), dashed=True)
        arrow(ax, (3.1, 3.4), (x - 0.5, 5.0), dashed=True)
    ax.text(8.2, 4.3, "assignments (LISTEN/NOTIFY), events", fontsize=7.5, ha="left")
    ax.text(1.2, 4.3, "scrape", fontsize=7.5)
    arrow(ax, (15.2, 6.8), (15.2, 7.6), both=True)
    arrow(ax, (13.3, 7.6), (11.8, 3.0), "registry", dashed=True, offset=(0.6, -1.5))
    arrow(ax, (15.2, 3.4), (15.2, 5.0), "HTTP", offset=(0.5, 0))
    save(figure, "cluster.svg")


if __name__ == "__main__":
    draw_node()
    draw_cluster()
