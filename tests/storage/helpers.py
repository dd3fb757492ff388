"""Helpers of the storage suite: model.yaml documents, events, and a second connection acting as an operator."""

from __future__ import annotations

import time
from typing import Any

import yaml
from testkit import EXAMPLE_MODEL_DIR

from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import Detection
from ruth_ai_core.events import ResultEvent


def model_config(model_id: str, version: str = "1.0.0", tasks: tuple[str, ...] = ("detection",), **changes: Any) -> ModelConfig:
    document = yaml.safe_load((EXAMPLE_MODEL_DIR / "model.yaml").read_text())
    document.update(model_id=model_id, model_version=version, supported_tasks=list(tasks), **changes)
    return ModelConfig.model_validate(document)


def event(camera: str = "cam1", model: str = "det", frame_id: int = 1, timestamp_ns: int = 0,
          detections: int = 2, **changes: Any) -> dict[str, Any]:
    """An event as Core writes it to a sink: a plain dict with ResultEvent's fields (validated here)."""
    boxes = [Detection(class_id=0, class_name="person", confidence=0.5 + i / 10, bbox=(1.0, 2.0, 30.0 + i, 40.0))
             for i in range(detections)]
    fields: dict[str, Any] = dict(camera_id=camera, model_id=model, frame_id=frame_id,
                                  frame_timestamp_ns=timestamp_ns or 1_700_000_000_000_000_000 + frame_id * 40_000_000,
                                  sent_at=time.time(), latency_ms=1.5, detections=boxes, width=640, height=480)
    fields.update(changes)
    return ResultEvent(**fields).model_dump(mode="json")
