"""Load PyTorch and ONNX models onto the daemon's Device, and prepare frames for them there.

A handler's ``load`` calls one of the loaders with ``self.device``; its
``preprocess`` turns the read-only NV12 view into the model's input with
``frame_to_rgb_tensor`` + ``letterbox_tensor`` (torch models) or
``letterbox_image`` (numpy models: ONNX, TFLite), and its ``postprocess``
maps boxes back to source pixels with the returned ``Letterbox``.

torch and onnxruntime are imported inside the functions that need them: the
base image ships neither, and a model image installs only the one it uses.

On a GPU the NV12 bytes are copied to the device as they are (1.5 bytes a
pixel) and converted there, which moves half the data of an RGB upload and
takes the colour conversion off the CPU. On the CPU, OpenCV's SIMD conversion
is faster than torch's, so the CPU path uses it.

For a batching model, ``NV12Staging`` splits that in two: ``stage`` (in
``preprocess``, while the frame view is valid) copies the NV12 bytes into a
pinned host buffer taken from a pool, and ``to_batch`` (in ``infer_batch``)
uploads every staged frame, converts and letterboxes the whole batch on the
device and gives the buffers back, so pinned memory is allocated once per
frame size and reused, never per request.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import cv2
import numpy as np

from ai_model_container.contract.frame_reader import FrameView
from ai_model_container.device import Device

if TYPE_CHECKING:
    import onnxruntime
    import torch

# OpenCV's fixed-point BT.601 limited-range constants (color_yuv.simd.hpp, ITUR_BT_601_*), so the
# torch conversion gives what cv2.COLOR_YUV2RGB_NV12 gives, within rounding.
_SHIFT = float(1 << 20)
_CY = 1220542 / _SHIFT
_CUB = 2116026 / _SHIFT
_CUG = -409993 / _SHIFT
_CVG = -852492 / _SHIFT
_CVR = 1673527 / _SHIFT

CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"


@dataclass(frozen=True)
class Letterbox:
    """How a source image was scaled and padded into a model input, to map outputs back.

    The image keeps its aspect ratio: it is resized to ``resized_width`` x
    ``resized_height`` and placed at (``pad_x``, ``pad_y``) on a canvas of the
    input size, so shapes are not distorted (a lying person stays wide).
    """

    source_width: int
    source_height: int
    input_width: int
    input_height: int
    resized_width: int
    resized_height: int
    pad_x: int
    pad_y: int

    @classmethod
    def fit(cls, source_width: int, source_height: int, input_width: int, input_height: int) -> "Letterbox":
        if min(source_width, source_height, input_width, input_height) <= 0:
            raise ValueError("letterbox sizes must be positive")
        scale = min(input_width / source_width, input_height / source_height)
        resized_width = min(input_width, max(1, round(source_width * scale)))
        resized_height = min(input_height, max(1, round(source_height * scale)))
        return cls(source_width, source_height, input_width, input_height, resized_width, resized_height,
                   (input_width - resized_width) // 2, (input_height - resized_height) // 2)

    def to_source(self, points: np.ndarray) -> np.ndarray:
        """Map x, y pairs (last axis of size 2) from input pixels to source pixels, clipped to the frame."""
        points = np.asarray(points, dtype=np.float64)
        x = (points[..., 0] - self.pad_x) * (self.source_width / self.resized_width)
        y = (points[..., 1] - self.pad_y) * (self.source_height / self.resized_height)
        return np.stack([np.clip(x, 0, self.source_width), np.clip(y, 0, self.source_height)], axis=-1)

    def box_to_source(self, box: Sequence[float]) -> tuple[float, float, float, float]:
        """Map an (x_min, y_min, x_max, y_max) box from input pixels to source pixels."""
        (x_min, y_min), (x_max, y_max) = self.to_source(np.array([box[:2], box[2:4]]))
        return float(x_min), float(y_min), float(x_max), float(y_max)


def letterbox_image(image: np.ndarray, input_width: int, input_height: int,
                    fill: int = 0) -> tuple[np.ndarray, Letterbox]:
    """Resize an (H, W, C) uint8 image into an input canvas with OpenCV, keeping the aspect ratio."""
    height, width = image.shape[:2]
    geometry = Letterbox.fit(width, height, input_width, input_height)
    interpolation = cv2.INTER_AREA if geometry.resized_width < width else cv2.INTER_LINEAR
    resized = cv2.resize(image, (geometry.resized_width, geometry.resized_height), interpolation=interpolation)
    canvas = np.full((input_height, input_width) + image.shape[2:], fill, dtype=image.dtype)
    canvas[geometry.pad_y:geometry.pad_y + geometry.resized_height,
           geometry.pad_x:geometry.pad_x + geometry.resized_width] = resized
    return canvas, geometry


def torch_device(device: Device) -> "torch.device":
    import torch

    return torch.device(device.torch_device)


def nv12_to_rgb(nv12: "torch.Tensor", height: int) -> "torch.Tensor":
    """Convert a (height * 3 / 2, width) uint8 NV12 tensor to (3, height, width) float32 RGB in 0..255.

    A batch, (N, height * 3 / 2, width), converts in one go to (N, 3, height, width). Runs
    wherever the tensor lives. BT.601 limited range with chroma repeated over each 2x2 block,
    as OpenCV does.
    """
    import torch

    if nv12.dim() not in (2, 3) or nv12.shape[-2] != height * 3 // 2 or height % 2 or nv12.shape[-1] % 2:
        raise ValueError(f"expected an NV12 tensor of shape ([N,] {height * 3 // 2}, even width), "
                         f"got {tuple(nv12.shape)}")
    width = nv12.shape[-1]
    leading = nv12.shape[:-2]
    luma = (nv12[..., :height, :].to(torch.float32) - 16.0).clamp_(min=0.0) * _CY
    chroma = nv12[..., height:, :].reshape(*leading, height // 2, width // 2, 2).to(torch.float32) - 128.0
    chroma = chroma.repeat_interleave(2, dim=-3).repeat_interleave(2, dim=-2)
    u, v = chroma[..., 0], chroma[..., 1]
    rgb = torch.stack([luma + _CVR * v, luma + _CUG * u + _CVG * v, luma + _CUB * u], dim=-3)
    return rgb.clamp_(0.0, 255.0)


def frame_to_rgb_tensor(frame: FrameView, device: Device) -> "torch.Tensor":
    """The frame as a (3, H, W) float32 RGB tensor (0..255) on the model's device.

    Copies the pixels out of shared memory before returning, so the result
    stays valid after the view dies (call it inside ``preprocess``).
    """
    import torch

    target = torch_device(device)
    if target.type == "cuda":
        host = torch.from_numpy(np.array(frame.nv12))  # contiguous, writable copy: the one the reader allows
        return nv12_to_rgb(host.to(target, non_blocking=True), frame.height)
    rgb = frame.to_rgb()
    return torch.from_numpy(rgb).permute(2, 0, 1).to(torch.float32)


def letterbox_tensor(image: "torch.Tensor", input_width: int, input_height: int,
                     fill: float = 0.0) -> tuple["torch.Tensor", Letterbox]:
    """Resize a (C, H, W) float tensor into an input canvas on its own device, keeping the aspect ratio.

    Antialiased bilinear, so downscaling a 1080p frame does not alias.
    """
    import torch
    import torch.nn.functional as functional

    height, width = image.shape[-2:]
    geometry = Letterbox.fit(width, height, input_width, input_height)
    resized = functional.interpolate(image.unsqueeze(0), size=(geometry.resized_height, geometry.resized_width),
                                     mode="bilinear", align_corners=False,
                                     antialias=geometry.resized_width < width)[0]
    canvas = torch.full((image.shape[0], input_height, input_width), fill, dtype=image.dtype, device=image.device)
    canvas[:, geometry.pad_y:geometry.pad_y + geometry.resized_height,
           geometry.pad_x:geometry.pad_x + geometry.resized_width] = resized
    return canvas, geometry


class StagedFrame:
    """One frame's NV12 bytes in a host buffer of the staging pool, waiting for its batch's upload."""

    __slots__ = ("nv12", "width", "height")

    def __init__(self, nv12: "torch.Tensor", width: int, height: int) -> None:
        self.nv12 = nv12
        self.width = width
        self.height = height


class NV12Staging:
    """Pinned host buffers for NV12 frames, reused across batches; thread-safe (workers share it).

    On a CUDA device the buffers are pinned (page-locked), so uploads are asynchronous DMA; on
    the CPU they are ordinary tensors and ``to_batch`` converts there.
    """

    def __init__(self, device: Device) -> None:

        self.device = torch_device(device)
        self._pinned = self.device.type == "cuda"
        self._free: dict[tuple[int, int], list["torch.Tensor"]] = {}
        self._lock = threading.Lock()
        self.allocated = 0
        """Host buffers made so far: stays flat once every frame size has been seen at the largest batch."""

    def stage(self, frame: FrameView) -> StagedFrame:
        """Copy the frame's NV12 bytes (dropping stride padding) into a pooled host buffer."""
        import torch

        shape = (frame.height * 3 // 2, frame.width)
        with self._lock:
            free = self._free.get(shape)
            buffer = free.pop() if free else None
        if buffer is None:
            buffer = torch.empty(shape, dtype=torch.uint8, pin_memory=self._pinned)
            with self._lock:
                self.allocated += 1
        buffer.numpy()[...] = frame.nv12
        return StagedFrame(buffer, frame.width, frame.height)

    def to_batch(self, frames: Sequence[StagedFrame], input_width: int, input_height: int,
                 fill: float = 0.0) -> tuple["torch.Tensor", list[Letterbox]]:
        """A (N, 3, input_height, input_width) float32 RGB batch (0..255) on the device, letterboxed.

        Frames of one size are converted as one tensor; the host buffers go back to the pool
        once their copies have completed.
        """
        import torch

        images: list[Optional[torch.Tensor]] = [None] * len(frames)
        by_size: dict[tuple[int, int], list[int]] = {}
        for index, staged in enumerate(frames):
            by_size.setdefault((staged.width, staged.height), []).append(index)
        for (_, height), indices in by_size.items():
            uploads = [frames[index].nv12.to(self.device, non_blocking=self._pinned) for index in indices]
            rgb = nv12_to_rgb(torch.stack(uploads), height)
            for position, index in enumerate(indices):
                images[index] = rgb[position]
        batch, geometries = [], []
        for image in images:
            assert image is not None
            canvas, geometry = letterbox_tensor(image, input_width, input_height, fill)
            batch.append(canvas)
            geometries.append(geometry)
        if self._pinned:
            torch.cuda.current_stream(self.device).synchronize()  # the uploads are done: buffers may be reused
        with self._lock:
            for staged in frames:
                self._free.setdefault(tuple(staged.nv12.shape), []).append(staged.nv12)
        return torch.stack(batch), geometries


def load_torchscript(path: Path, device: Device) -> "torch.jit.ScriptModule":
    """Load a TorchScript file onto the device, in eval mode."""
    import torch

    module = torch.jit.load(str(path), map_location=torch_device(device))
    return module.eval()


def load_state_dict(module: "torch.nn.Module", path: Path, device: Device) -> "torch.nn.Module":
    """Load a state dict file into an eager module (strictly: every key must match), on the device, in eval mode.

    ``weights_only`` keeps a tampered file from running code on load.
    """
    import torch

    state = torch.load(str(path), map_location=torch_device(device), weights_only=True)
    module.load_state_dict(state, strict=True)
    return module.to(torch_device(device)).eval()


def onnx_providers(device: Device, available: Sequence[str]) -> list[str]:
    """Execution providers in order of preference: CUDA first when the device is a GPU and ORT has it."""
    if device.kind == "cuda" and CUDA_PROVIDER in available:
        return [CUDA_PROVIDER, CPU_PROVIDER]
    return [CPU_PROVIDER]


def onnx_session(path: Path, device: Device, intra_op_threads: int = 0) -> "onnxruntime.InferenceSession":
    """An onnxruntime session for the model file on the device (0 threads: onnxruntime's default)."""
    import onnxruntime

    if not Path(path).is_file():
        raise FileNotFoundError(f"ONNX model {path} does not exist")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    providers = onnx_providers(device, onnxruntime.get_available_providers())
    return onnxruntime.InferenceSession(str(path), sess_options=options, providers=providers)
