"""Face detection: MTCNN (P-, R-, O-Net) as eager PyTorch modules on the daemon's device.

On a GPU the frame goes to the device as NV12 and becomes an RGB tensor there
(backends.frame_to_rgb_tensor); the whole cascade then runs on that device. On
the CPU the frame becomes a uint8 RGB array, OpenCV makes the pyramid and the
crops, and the nets run with one intra-op thread. Each face comes back with
its box, the O-Net probability as confidence and five landmarks as keypoints.

Per-request options (the speed / recall trade-off, README.md):
``min_face_size`` (pixels of the source frame, 12-1000, default 30; smaller
finds smaller faces at a cost that grows as 1 / min_face_size squared),
``pyramid_factor`` (0.5-0.85, default 0.6; larger means more pyramid levels,
finer steps between face sizes, more time) and ``min_confidence`` (0-1,
default 0.7, the O-Net threshold).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from mtcnn_cascade import CascadeSettings, Faces, detect_faces
from mtcnn_nets import ONet, PNet, RNet

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest, Keypoint
from ai_model_container.backends import frame_to_rgb_tensor, load_state_dict
from ai_model_container.request_options import float_option

DEFAULTS = CascadeSettings(min_face_size=30.0, pyramid_factor=0.6)  # <= 60 ms per 1280x720 frame, one core
LANDMARKS = 5


@dataclass(frozen=True)
class Prepared:
    image: Union[torch.Tensor, np.ndarray]
    """(3, H, W) float tensor on the GPU, or (H, W, 3) uint8 RGB on the CPU."""
    settings: CascadeSettings


class FaceDetectionHandler(InferenceHandler[Prepared, Faces]):
    def load(self) -> None:
        weights = {Path(weight.path).stem: self.model_dir / weight.path for weight in self.config.weights}
        if set(weights) != {"pnet", "rnet", "onet"}:
            raise ValueError("model.yaml must list weights/pnet.pt, weights/rnet.pt and weights/onet.pt")
        if len(self.config.output_schema.keypoints or []) != LANDMARKS:
            raise ValueError("model.yaml must name the 5 MTCNN landmarks under output_schema.keypoints")
        if self.device.kind != "cuda":
            # The cascade is hundreds of small ops; intra-op threads cost more in handoffs than they
            # gain (350 ms against 2.5 s here on a loaded 2-core machine). Requests still run in parallel.
            torch.set_num_threads(1)
        self.nets = tuple(load_state_dict(net(), weights[name], self.device).to(memory_format=torch.channels_last)
                          for name, net in (("pnet", PNet), ("rnet", RNet), ("onet", ONet)))

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Prepared:
        settings = CascadeSettings(
            min_face_size=float_option(request, "min_face_size", DEFAULTS.min_face_size, 12.0, 1000.0),
            thresholds=(*DEFAULTS.thresholds[:2],
                        float_option(request, "min_confidence", DEFAULTS.thresholds[2], 0.0, 1.0)),
            pyramid_factor=float_option(request, "pyramid_factor", DEFAULTS.pyramid_factor, 0.5, 0.85),
        )
        if self.device.kind == "cuda":
            return Prepared(frame_to_rgb_tensor(frame, self.device), settings)
        return Prepared(frame.to_rgb(), settings)

    def infer(self, inputs: Prepared) -> Faces:
        with torch.inference_mode():
            faces = detect_faces(inputs.image, self.nets, inputs.settings)
        return Faces(faces.boxes.cpu(), faces.scores.cpu(), faces.landmarks.cpu())

    def postprocess(self, outputs: Faces, inputs: Prepared, frame: FrameInfo,
                    request: InferenceRequest) -> list[Detection]:
        names = self.config.output_schema.keypoints or []
        detections = []
        for box, score, landmarks in zip(outputs.boxes.tolist(), outputs.scores.tolist(), outputs.landmarks.tolist()):
            x_min, y_min = max(box[0], 0.0), max(box[1], 0.0)
            x_max, y_max = min(box[2], float(frame.width)), min(box[3], float(frame.height))
            if x_max - x_min < 1 or y_max - y_min < 1:
                continue
            confidence = min(max(score, 0.0), 1.0)
            detections.append(Detection(
                class_id=0, class_name=self.class_name(0), confidence=round(confidence, 4),
                bbox=(x_min, y_min, x_max, y_max),
                keypoints=[Keypoint(x=x, y=y, score=round(confidence, 4), name=name)
                           for (x, y), name in zip(landmarks, names)],
            ))
        return detections
