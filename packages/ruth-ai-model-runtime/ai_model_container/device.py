"""Where a model runs: the GPU when there is one, else the CPU, else degraded.

GPU absence is never fatal (CONTRACT.md, "Health states"): a daemon whose
model may not run on the CPU still starts, answers health and describe, and
refuses inference with MODEL_NOT_READY, so the control plane sees a clear
DEGRADED model instead of a crash loop.

``RUTH_DEVICE`` (auto, cuda, cpu) overrides model.yaml's ``resources.device``
for one deployment without editing the model.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from typing import Literal, Mapping, Optional

from ai_model_container.contract.model_config import Resources

DEVICE_ENV = "RUTH_DEVICE"


@dataclass(frozen=True)
class Device:
    kind: Literal["cuda", "cpu", "none"]
    name: str
    degraded_reason: Optional[str] = None

    @property
    def torch_device(self) -> str:
        """The torch device string; ``cpu`` for the degraded mode too, so loading still works."""
        return "cuda:0" if self.kind == "cuda" else "cpu"

    def __str__(self) -> str:
        return self.name


def detect_gpu() -> Optional[str]:
    """Name of the first CUDA device, found through torch or onnxruntime if installed."""
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            return f"cuda:0 ({torch.cuda.get_device_name(0)})"
    if importlib.util.find_spec("onnxruntime") is not None:
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            return "cuda:0 (onnxruntime CUDAExecutionProvider)"
    return None


def select_device(resources: Resources, environ: Mapping[str, str] = os.environ) -> Device:
    """Pick the device for a model from its resources and the environment."""
    wanted = environ.get(DEVICE_ENV, resources.device).strip().lower()
    if wanted not in ("auto", "cuda", "cpu"):
        raise ValueError(f"{DEVICE_ENV}={wanted!r}: expected auto, cuda or cpu")
    if wanted != "cpu":
        gpu = detect_gpu()
        if gpu is not None:
            return Device("cuda", gpu)
    if wanted == "cpu" or resources.cpu_fallback:
        return Device("cpu", "cpu")
    return Device("none", "none", degraded_reason="the model needs a GPU, none is available and cpu_fallback is false")


def gpu_memory_in_use() -> Optional[int]:
    """Bytes of GPU memory torch has allocated in this process; None when torch is not loaded or has no GPU.

    Looked up in ``sys.modules`` rather than imported: a model that does not use torch never loads it.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return int(torch.cuda.memory_allocated())


def release_gpu_cache() -> None:
    """Give the GPU memory torch holds in reserve back after an out-of-memory error (a no-op without one)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def is_out_of_memory(error: BaseException) -> bool:
    """True for a GPU allocation failure (torch's OutOfMemoryError, onnxruntime's CUDA allocator error)."""
    return type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower()
