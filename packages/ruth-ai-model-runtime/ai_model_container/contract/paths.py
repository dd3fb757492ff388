"""Where sockets and models live, and the one place those defaults are spelled."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

SOCKET_DIR_ENV = "VAS_MODEL_SOCKET_DIR"
DEFAULT_SOCKET_DIR = "/tmp"
MODELS_ROOT_ENV = "RUTH_MODELS_ROOT"
DEFAULT_MODELS_ROOT = "/opt/ruth-ai/models"


def socket_dir(override: Optional[str] = None) -> Path:
    """The socket directory: an explicit override, else $VAS_MODEL_SOCKET_DIR, else /tmp."""
    return Path(override or os.environ.get(SOCKET_DIR_ENV) or DEFAULT_SOCKET_DIR)


def socket_path(model_id: str, directory: Optional[str] = None) -> Path:
    """The socket a model's daemon listens on: <dir>/vas_model_<model_id>.sock."""
    return socket_dir(directory) / f"vas_model_{model_id}.sock"


def models_root(override: Optional[str] = None) -> Path:
    return Path(override or os.environ.get(MODELS_ROOT_ENV) or DEFAULT_MODELS_ROOT)
