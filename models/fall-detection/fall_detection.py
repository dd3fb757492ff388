"""Fall detection: MoveNet MultiPose finds people and their keypoints, posture logic calls fall / no_fall.

MoveNet MultiPose Lightning (Google, Apache-2.0) runs on LiteRT, which has
no CUDA backend on x86: this model runs on the CPU whatever the device, and
its model.yaml says so. One pass finds up to six people, each with a box, 17
keypoints and a score; ``fall_posture`` turns each skeleton into a posture.

Per-request options: ``min_person_score`` (0-1, default 0.2) drops weak
people; ``fall_angle_deg`` (10-170, default 55) moves the posture threshold.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import numpy as np
from fall_posture import DEFAULT_FALL_ANGLE_DEG, classify_posture

from ai_model_container import Detection, FrameInfo, FrameView, InferenceHandler, InferenceRequest, Keypoint
from ai_model_container.backends import Letterbox, letterbox_image
from ai_model_container.request_options import float_option

INPUT_SIZE = 256  # MoveNet MultiPose takes any multiple of 32; 256 is its reference size
MAX_PEOPLE = 6
KEYPOINTS = 17
DEFAULT_MIN_PERSON_SCORE = 0.2


@dataclass(frozen=True)
class Prepared:
    image: np.ndarray
    geometry: Letterbox
    min_person_score: float
    fall_angle_deg: float


class FallDetectionHandler(InferenceHandler[Prepared, np.ndarray]):
    def load(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        classes = self.config.output_schema.classes
        keypoint_names = self.config.output_schema.keypoints or []
        if {"fall", "no_fall"} - set(classes) or len(keypoint_names) != KEYPOINTS:
            raise ValueError("model.yaml must list classes fall and no_fall and the 17 COCO keypoint names")
        self.fall_id, self.no_fall_id = classes.index("fall"), classes.index("no_fall")
        self.keypoint_names = keypoint_names
        weights = self.model_dir / self.config.weights[0].path
        self.interpreter = Interpreter(model_path=str(weights), num_threads=min(4, os.cpu_count() or 1))
        index = self.interpreter.get_input_details()[0]["index"]
        self.interpreter.resize_tensor_input(index, (1, INPUT_SIZE, INPUT_SIZE, 3))
        self.interpreter.allocate_tensors()
        self.input_index = self.interpreter.get_input_details()[0]["index"]
        self.output_index = self.interpreter.get_output_details()[0]["index"]
        self.lock = threading.Lock()  # a LiteRT interpreter runs one invocation at a time

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Prepared:
        min_person_score = float_option(request, "min_person_score", DEFAULT_MIN_PERSON_SCORE, 0.0, 1.0)
        fall_angle_deg = float_option(request, "fall_angle_deg", DEFAULT_FALL_ANGLE_DEG, 10.0, 170.0)
        image, geometry = letterbox_image(frame.to_rgb(), INPUT_SIZE, INPUT_SIZE)
        return Prepared(image, geometry, min_person_score, fall_angle_deg)

    def infer(self, inputs: Prepared) -> np.ndarray:
        with self.lock:
            self.interpreter.set_tensor(self.input_index, inputs.image[np.newaxis])
            self.interpreter.invoke()
            return self.interpreter.get_tensor(self.output_index)[0].copy()

    def postprocess(self, people: np.ndarray, prepared: Prepared, frame: FrameInfo,
                    request: InferenceRequest) -> list[Detection]:
        detections = []
        for row in people[:MAX_PEOPLE]:
            person_score = float(row[55])
            if person_score < prepared.min_person_score:
                continue
            y_x_score = row[:51].reshape(KEYPOINTS, 3)
            points = prepared.geometry.to_source(y_x_score[:, 1::-1] * INPUT_SIZE)
            keypoints = np.column_stack([points, np.clip(y_x_score[:, 2], 0.0, 1.0)])
            y_min, x_min, y_max, x_max = (float(value) * INPUT_SIZE for value in row[51:55])
            box = prepared.geometry.box_to_source((x_min, y_min, x_max, y_max))
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            posture = classify_posture(keypoints, box, prepared.fall_angle_deg)
            fall = posture.is_fall()
            detections.append(Detection(
                class_id=self.fall_id if fall else self.no_fall_id,
                class_name="fall" if fall else "no_fall",
                confidence=round(posture.fall_probability if fall else 1.0 - posture.fall_probability, 4),
                bbox=box,
                keypoints=[Keypoint(x=float(x), y=float(y), score=float(score), name=name)
                           for (x, y, score), name in zip(keypoints, self.keypoint_names)],
                attributes={"person_score": round(person_score, 4), "body_angle_deg": round(posture.angle_deg, 1),
                            "angle_source": posture.source},
            ))
        return detections
