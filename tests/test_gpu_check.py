"""bench.gpu_check, the one-command GPU proof, runs here too: on the CPU, small, without its batching part.

So the script, its generated torch model and the NV12 staging path it drives cannot rot
between the rare runs on a GPU machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


def gpu_check(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench.gpu_check", *arguments], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


@pytest.mark.slow
def test_the_gpu_check_passes_on_the_cpu() -> None:
    result = gpu_check("--device", "cpu", "--requests", "3200", "--no-batching", "--frame-size", "160x120")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "served vs CPU outputs" in result.stdout and "MISS" not in result.stdout


def test_the_gpu_check_refuses_to_run_on_cuda_without_a_gpu() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the full check is for it")
    result = gpu_check("--quick")
    assert result.returncode == 2 and "no CUDA device" in result.stderr
