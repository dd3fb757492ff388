"""backends.py on the CPU: loaders for TorchScript, eager and ONNX models, and frame preprocessing.

Pixels are a real photo (NASA's public-domain astronaut portrait, shipped with
the fall-detection tests) pushed through the reference writer and the
read-only reader, so the NV12 view has the same strides a daemon sees.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnxruntime = pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

from ai_model_container.backends import (  # noqa: E402  (after the importorskips)
    CPU_PROVIDER,
    CUDA_PROVIDER,
    Letterbox,
    NV12Staging,
    frame_to_rgb_tensor,
    letterbox_image,
    letterbox_tensor,
    load_state_dict,
    load_torchscript,
    nv12_to_rgb,
    onnx_providers,
    onnx_session,
)
from ai_model_container.contract.client import inference_request  # noqa: E402
from ai_model_container.contract.frame_reader import FrameReader  # noqa: E402
from ai_model_container.contract.schema import FrameMetadata  # noqa: E402
from ai_model_container.device import Device  # noqa: E402
from ruth_model_tools.frame_writer import bgr_to_nv12  # noqa: E402

PHOTOS = Path(__file__).resolve().parent / "real_models" / "photos"
CPU = Device("cpu", "cpu")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    image = cv2.imread(str(PHOTOS / "astronaut.jpg"))
    assert image is not None
    return cv2.resize(image, (640, 480))


def read_back(writer, frame_id: int, consume):
    """Read frame ``frame_id`` of the writer's ring through FrameReader, the way a daemon does."""
    request = inference_request("m", writer.camera_id, frame_id, writer.width, writer.height)
    metadata = FrameMetadata.model_validate(request.frame_metadata.model_dump())
    return FrameReader().read(request.frame_reference, metadata, consume)


def test_torch_nv12_conversion_matches_opencv_on_a_padded_ring(make_writer, camera_id, astronaut):
    writer = make_writer(camera_id, 640, 480, stride=704)  # rows padded, as hardware decoders do
    frame_id = writer.write_bgr(astronaut)

    def convert(view):
        expected = view.to_rgb()
        converted = nv12_to_rgb(torch.from_numpy(np.array(view.nv12)), view.height)
        return expected, converted

    expected, converted = read_back(writer, frame_id, convert)
    assert converted.shape == (3, 480, 640) and converted.dtype == torch.float32
    difference = np.abs(converted.round().permute(1, 2, 0).numpy() - expected.astype(np.float32))
    assert difference.max() <= 1.0
    assert difference.mean() < 0.5


def test_frame_to_rgb_tensor_copies_out_of_shared_memory(make_writer, camera_id, astronaut):
    writer = make_writer(camera_id, 640, 480)
    frame_id = writer.write_bgr(astronaut)
    tensor = read_back(writer, frame_id, lambda view: frame_to_rgb_tensor(view, CPU))
    writer.write_bgr(np.zeros_like(astronaut))  # the slot is reused; the tensor must not change
    for _ in range(4):
        writer.write_bgr(np.zeros_like(astronaut))
    rgb = cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB).astype(np.float32)
    assert tensor.shape == (3, 480, 640)
    assert np.abs(tensor.permute(1, 2, 0).numpy() - rgb).mean() < 3.0  # only NV12 chroma subsampling loss


def test_nv12_to_rgb_rejects_a_tensor_that_is_not_nv12():
    with pytest.raises(ValueError, match="NV12"):
        nv12_to_rgb(torch.zeros(480, 640, dtype=torch.uint8), 480)
    with pytest.raises(ValueError, match="NV12"):
        nv12_to_rgb(torch.zeros(721, 1280, dtype=torch.uint8), 481)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_nv12_conversion_on_the_gpu_matches_the_cpu(astronaut):
    from ruth_model_tools.frame_writer import bgr_to_nv12

    nv12 = torch.from_numpy(bgr_to_nv12(astronaut))
    on_gpu = nv12_to_rgb(nv12.cuda(), 480).cpu()
    assert torch.allclose(on_gpu, nv12_to_rgb(nv12, 480), atol=1e-3)


def test_letterbox_keeps_the_aspect_ratio_and_maps_back():
    geometry = Letterbox.fit(1280, 720, 256, 256)
    assert (geometry.resized_width, geometry.resized_height, geometry.pad_x, geometry.pad_y) == (256, 144, 0, 56)
    box = geometry.box_to_source((64, 56 + 36, 128, 56 + 72))
    assert box == pytest.approx((320, 180, 640, 360))
    assert geometry.to_source(np.array([[-10.0, 0.0]])).tolist() == [[0.0, 0.0]]  # padding clips to the frame
    with pytest.raises(ValueError):
        Letterbox.fit(0, 720, 256, 256)


def test_opencv_and_torch_letterbox_agree(astronaut):
    rgb = cv2.cvtColor(astronaut, cv2.COLOR_BGR2RGB)
    canvas, geometry = letterbox_image(rgb, 320, 320)
    tensor, tensor_geometry = letterbox_tensor(torch.from_numpy(rgb).permute(2, 0, 1).float(), 320, 320)
    assert geometry == tensor_geometry
    assert canvas.shape == (320, 320, 3) and tensor.shape == (3, 320, 320)
    assert (canvas[:geometry.pad_y] == 0).all() and (tensor[:, :geometry.pad_y] == 0).all()
    difference = np.abs(tensor.permute(1, 2, 0).numpy() - canvas.astype(np.float32))
    assert difference.mean() < 4.0


class TinyNet(torch.nn.Module):
    """A small conv net: enough layers that a wrong weight or layout shows in the output."""

    def __init__(self) -> None:
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.PReLU(8), torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, 4, 3), torch.nn.AdaptiveAvgPool2d(1),
        )
        self.head = torch.nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).flatten(1))


@pytest.fixture
def tiny_weights(tmp_path: Path) -> tuple[TinyNet, Path, Path]:
    torch.manual_seed(7)
    reference = TinyNet().eval()
    state_path = tmp_path / "tiny.pt"
    torch.save(reference.state_dict(), state_path)
    script_path = tmp_path / "tiny.torchscript"
    torch.jit.save(torch.jit.script(reference), str(script_path))
    return reference, state_path, script_path


def test_eager_and_torchscript_models_give_the_same_answer(tiny_weights, astronaut):
    reference, state_path, script_path = tiny_weights
    eager = load_state_dict(TinyNet(), state_path, CPU)
    scripted = load_torchscript(script_path, CPU)
    assert not eager.training and not scripted.training
    image, _ = letterbox_tensor(torch.from_numpy(astronaut).permute(2, 0, 1).float() / 255.0, 96, 96)
    with torch.inference_mode():
        expected = reference(image[None])
        assert torch.allclose(eager(image[None]), expected, atol=1e-6)
        assert torch.allclose(scripted(image[None]), expected, atol=1e-6)
    assert not torch.allclose(TinyNet()(image[None]), expected)  # the weights, not the architecture, decide


def test_a_state_dict_for_another_architecture_is_refused(tiny_weights, tmp_path):
    _, state_path, _ = tiny_weights
    other = torch.nn.Sequential(torch.nn.Linear(4, 3))
    with pytest.raises(RuntimeError, match="state_dict"):
        load_state_dict(other, state_path, CPU)


def test_a_corrupt_weight_file_is_refused(tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(Exception):
        load_state_dict(TinyNet(), broken, CPU)
    with pytest.raises(Exception):
        load_torchscript(broken, CPU)


def scale_and_shift_model(path: Path) -> None:
    """y = x * 2 + 1 as an ONNX graph with a dynamic batch."""
    from onnx import TensorProto, helper, numpy_helper

    graph = helper.make_graph(
        [helper.make_node("Mul", ["x", "two"], ["doubled"]), helper.make_node("Add", ["doubled", "one"], ["y"])],
        "scale_and_shift",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.array(2.0, np.float32), "two"),
                     numpy_helper.from_array(np.array(1.0, np.float32), "one")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


def test_onnx_session_runs_on_the_cpu(tmp_path):
    path = tmp_path / "model.onnx"
    scale_and_shift_model(path)
    session = onnx_session(path, CPU, intra_op_threads=1)
    assert session.get_providers() == [CPU_PROVIDER]
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, x * 2 + 1)


def test_onnx_providers_put_cuda_first_only_on_a_gpu():
    gpu = Device("cuda", "cuda:0 (test)")
    assert onnx_providers(gpu, [CUDA_PROVIDER, CPU_PROVIDER]) == [CUDA_PROVIDER, CPU_PROVIDER]
    assert onnx_providers(gpu, [CPU_PROVIDER]) == [CPU_PROVIDER]  # onnxruntime without CUDA: CPU
    assert onnx_providers(CPU, [CUDA_PROVIDER, CPU_PROVIDER]) == [CPU_PROVIDER]  # RUTH_DEVICE=cpu wins


def test_onnx_session_refuses_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FileNotFoundError):
        onnx_session(tmp_path / "absent.onnx", CPU)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x00garbage")
    with pytest.raises(Exception, match="(?i)protobuf|parse|load"):
        onnx_session(corrupt, CPU)


def test_nv12_conversion_of_a_batch_equals_frame_by_frame(astronaut):
    frames = [bgr_to_nv12(astronaut), bgr_to_nv12(cv2.flip(astronaut, 1))]
    batch = nv12_to_rgb(torch.from_numpy(np.stack(frames)), 480)
    assert batch.shape == (2, 3, 480, 640)
    for index, nv12 in enumerate(frames):
        assert torch.equal(batch[index], nv12_to_rgb(torch.from_numpy(nv12), 480))


def test_staging_reuses_its_buffers_and_batches_mixed_sizes(make_writer, camera_id, astronaut):
    staging = NV12Staging(CPU)
    big = make_writer(camera_id, 640, 480, stride=704)
    small = make_writer(camera_id + "s", 320, 240)
    big_id, small_id = big.write_bgr(astronaut), small.write_bgr(cv2.resize(astronaut, (320, 240)))
    for _ in range(5):
        staged = [read_back(big, big_id, staging.stage), read_back(small, small_id, staging.stage),
                  read_back(big, big_id, staging.stage)]
        batch, geometries = staging.to_batch(staged, 320, 320)
    assert staging.allocated == 3, "host buffers are allocated once per frame size and batch position"
    assert batch.shape == (3, 3, 320, 320) and batch.dtype == torch.float32
    assert [(g.source_width, g.source_height) for g in geometries] == [(640, 480), (320, 240), (640, 480)]
    expected, _ = letterbox_tensor(read_back(big, big_id, lambda view: frame_to_rgb_tensor(view, CPU)), 320, 320)
    assert float((batch[0] - expected).abs().mean()) < 1.5, "the staged path gives what the per-frame path gives"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_staging_on_the_gpu_uses_pinned_buffers_and_matches_the_cpu(make_writer, camera_id, astronaut):
    gpu = NV12Staging(Device("cuda", "cuda:0"))
    cpu = NV12Staging(CPU)
    writer = make_writer(camera_id, 640, 480)
    frame_id = writer.write_bgr(astronaut)
    staged = read_back(writer, frame_id, gpu.stage)
    assert staged.nv12.is_pinned()
    on_gpu, _ = gpu.to_batch([staged], 320, 320)
    on_cpu, _ = cpu.to_batch([read_back(writer, frame_id, cpu.stage)], 320, 320)
    assert on_gpu.device.type == "cuda"
    assert float((on_gpu.cpu() - on_cpu).abs().max()) < 1.0
