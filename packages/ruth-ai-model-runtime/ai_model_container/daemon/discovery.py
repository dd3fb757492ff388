"""Model discovery: every ``*/model.yaml`` under a models root, valid or not.

Discovery never stops at a bad file: invalid ones are reported with the reason
and the valid ones are kept, so one broken model cannot hide the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ai_model_container.contract.model_config import MODEL_FILE, ModelConfig, ModelConfigError, load_model_config

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiscoveredModel:
    directory: Path
    config: ModelConfig


@dataclass(frozen=True)
class Discovery:
    models: list[DiscoveredModel]
    invalid: list[tuple[Path, str]]


def discover_models(root: Path) -> Discovery:
    """Scan ``root/<model>/model.yaml`` (one level down); duplicate model_ids keep the first by path."""
    models: list[DiscoveredModel] = []
    invalid: list[tuple[Path, str]] = []
    seen: dict[str, Path] = {}
    if not root.is_dir():
        return Discovery(models, [(root, "models root does not exist or is not a directory")])
    for path in sorted(root.glob(f"*/{MODEL_FILE}")):
        try:
            config = load_model_config(path)
        except ModelConfigError as exc:
            invalid.append((path, str(exc)))
            logger.warning("skipping invalid model: %s", exc)
            continue
        if config.model_id in seen:
            reason = f"model_id {config.model_id!r} is already defined in {seen[config.model_id]}"
            invalid.append((path, reason))
            logger.warning("skipping %s: %s", path, reason)
            continue
        seen[config.model_id] = path
        models.append(DiscoveredModel(path.parent, config))
    return Discovery(models, invalid)
