"""The stand-in that holds a model's socket while ``serve-all`` waits to restart its process.

Clients keep seeing the model where they look for it: health answers with
the status and reason the supervisor gives (DEGRADED, "exited with code -9,
restart 3 in 4.0 s"), describe answers from the model's model.yaml, and
inference is refused with MODEL_NOT_READY. It runs no model and starts no
thread of its own; the server it is given to owns its start and stop.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Optional

from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.schema import ModelStatus
from ai_model_container.daemon.server import IPCServer
from ai_model_container.daemon.service import BaseService

STAND_IN_DEVICE = "none"


class StandInService(BaseService):
    def __init__(self, config: ModelConfig, status: ModelStatus, reason: str) -> None:
        super().__init__(config, STAND_IN_DEVICE, status, reason)


def stand_in_server(config: ModelConfig, path: Path, reason: str, status: ModelStatus = ModelStatus.DEGRADED,
                    listener: Optional[socket.socket] = None) -> IPCServer:
    """A server for ``path`` (or the ``listener`` given for it) whose health reports ``status`` and ``reason``."""
    return IPCServer(path, StandInService(config, status, reason), listener=listener)
