"""Fall detection: MoveNet MultiPose finds people and their keypoints, posture logic calls fall / no_fall.

The science is in two plain modules: ``person_pose`` (people and keypoints
from MoveNet over several views of the frame, merged) and ``fall_posture``
(the posture of one skeleton). This handler only reads the options, converts
the frame and maps people to detections.

MoveNet MultiPose Lightning (Google, Apache-2.0) runs on onnxruntime
(converted from the original TFLite file by convert_movenet.py): on the CUDA
provider when the daemon's device is a GPU and the onnxruntime installed has
it, else on the CPU with one intra-op thread per request.

Per-request options: ``min_person_score`` (0.05-1, default 0.1) drops weak
people; ``fall_angle_deg`` (10-170, default 55) moves the posture threshold.
"""

from __future__ import annotations

import numpy as np
from fall_posture import DEFAULT_FALL_ANGLE_DEG, classify_posture
from person_pose import KEYPOINTS, MoveNetOnnx, Person, detect_people, plan_views

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest, Keypoint
from ai_model_container.backends import onnx_providers
from ai_model_container.request_options import float_option

# What one frame costs, in MoveNet input pixels (about 0.43 us each on one core): the whole frame upright in
# 384x288 (a 768x576 frame at 0.5: people down to about 50 pixels tall), and turned both ways by 90 degrees
# in 96x128 each, where a person lying on the floor stands upright. plan_views shapes them to the frame.
# 448x320 finds 4% more people on the street camera at 20% more CPU, past the 100 ms budget (README).
UPRIGHT_PIXELS = 384 * 288
TURNED_PIXELS = 96 * 128
DETECTION_FLOOR = 0.05
"""Lowest person score kept by the detector; ``min_person_score`` filters above it."""
VIEW_FLOORS = (DETECTION_FLOOR, 0.2, 0.2)
"""The turned views see upright people on their side and false people more often: they need a higher score."""
DEFAULT_MIN_PERSON_SCORE = 0.1


class FallDetectionHandler(InferenceHandler[np.ndarray, list[Person]]):
    def load(self) -> None:
        import onnxruntime

        classes = self.config.output_schema.classes
        keypoint_names = self.config.output_schema.keypoints or []
        if {"fall", "no_fall"} - set(classes) or len(keypoint_names) != KEYPOINTS:
            raise ValueError("model.yaml must list classes fall and no_fall and the 17 COCO keypoint names")
        self.fall_id, self.no_fall_id = classes.index("fall"), classes.index("no_fall")
        self.keypoint_names = keypoint_names
        providers = onnx_providers(self.device, onnxruntime.get_available_providers())
        # onnxruntime sessions run concurrent requests safely; one intra-op thread each on the CPU.
        self.movenet = MoveNetOnnx(self.model_dir / self.config.weights[0].path, providers,
                                   intra_op_threads=1 if self.device.kind != "cuda" else 0)

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> np.ndarray:
        float_option(request, "min_person_score", DEFAULT_MIN_PERSON_SCORE, DETECTION_FLOOR, 1.0)
        float_option(request, "fall_angle_deg", DEFAULT_FALL_ANGLE_DEG, 10.0, 170.0)
        return frame.to_rgb()

    def infer(self, inputs: np.ndarray) -> list[Person]:
        views = plan_views(inputs.shape[1], inputs.shape[0], UPRIGHT_PIXELS, TURNED_PIXELS)
        return detect_people(inputs, views, self.movenet, DETECTION_FLOOR, VIEW_FLOORS)

    def postprocess(self, outputs: list[Person], inputs: np.ndarray, frame: FrameInfo,
                    request: InferenceRequest) -> list[Detection]:
        min_person_score = float_option(request, "min_person_score", DEFAULT_MIN_PERSON_SCORE, DETECTION_FLOOR, 1.0)
        fall_angle_deg = float_option(request, "fall_angle_deg", DEFAULT_FALL_ANGLE_DEG, 10.0, 170.0)
        detections = []
        for person in outputs:
            if person.score < min_person_score:
                continue
            posture = classify_posture(person.keypoints, person.box, fall_angle_deg)
            fall = posture.is_fall()
            detections.append(Detection(
                class_id=self.fall_id if fall else self.no_fall_id,
                class_name="fall" if fall else "no_fall",
                confidence=round(posture.fall_probability if fall else 1.0 - posture.fall_probability, 4),
                bbox=person.box,
                keypoints=[Keypoint(x=float(x), y=float(y), score=float(score), name=name)
                           for (x, y, score), name in zip(person.keypoints, self.keypoint_names)],
                attributes={"person_score": round(person.score, 4), "body_angle_deg": round(posture.angle_deg, 1),
                            "angle_source": posture.source, "posture_check": posture.check,
                            "view_rotation": person.rotation},
            ))
        return detections
