"""Where each model's daemon listens: the routing file.

By default a model answers on ``<socket dir>/vas_model_<model_id>.sock`` (the
runtime's own rule, ``ai_model_container.paths``). A routing file overrides
that per model, for example to send one model to a shared runtime started with
``ruth-model serve-all`` in another directory, or to an explicit socket, so
moving a model between a dedicated container and a shared runtime is a
configuration change:

    socket_dir: /run/ruth/models        # default directory for every model
    models:
      fall_detection: {socket: /run/ruth/containers/vas_model_fall_detection.sock}
      helmet: {socket_dir: /run/ruth/unified}
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from pydantic import BaseModel, ConfigDict, model_validator

from ai_model_container.contract.paths import socket_dir as default_socket_dir
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import Identifier
from ai_model_container.contract.yaml_files import parse_yaml_model


class RoutingError(ValueError):
    """A routing file that cannot be used; the message names the file and field."""


class ModelEndpoint(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    socket: Optional[Path] = None
    socket_dir: Optional[Path] = None

    @model_validator(mode="after")
    def _one_of(self) -> "ModelEndpoint":
        if (self.socket is None) == (self.socket_dir is None):
            raise ValueError("give exactly one of socket or socket_dir")
        return self


class RoutingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    socket_dir: Optional[Path] = None
    models: dict[Identifier, ModelEndpoint] = {}

    def endpoint(self, model_id: str, socket_dir_override: Optional[str] = None) -> Path:
        """The socket of ``model_id``: its route, else the routing file's directory, else the runtime default."""
        route = self.models.get(model_id)
        if route is not None and route.socket is not None:
            return route.socket
        if route is not None and route.socket_dir is not None:
            return socket_path(model_id, str(route.socket_dir))
        directory = socket_dir_override or (str(self.socket_dir) if self.socket_dir else None)
        return socket_path(model_id, str(default_socket_dir(directory)))


def load_routing(path: Optional[Path]) -> RoutingConfig:
    """Read a routing file; ``None`` means every model on its default socket."""
    if path is None:
        return RoutingConfig()
    return parse_yaml_model(path, RoutingConfig, RoutingError)
