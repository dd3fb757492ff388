"""Serving the API: the listen address and uvicorn, stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import ipaddress
import logging
from typing import Optional

import uvicorn

from ..storage.database import Database
from .app import create_app

logger = logging.getLogger(__name__)


class ListenAddressError(ValueError):
    """A --listen value that is not HOST:PORT."""


def parse_listen(value: str) -> tuple[str, int]:
    """``127.0.0.1:8090``, ``[::1]:8090``, ``0.0.0.0:8090`` or ``localhost:8090`` -> (host, port)."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host:
        raise ListenAddressError(f"--listen {value!r}: give HOST:PORT, e.g. 127.0.0.1:8090")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ListenAddressError(f"--listen {value!r}: {host!r} is not an IPv6 address") from None
    try:
        port = int(port_text)
    except ValueError:
        raise ListenAddressError(f"--listen {value!r}: the port is not a number") from None
    if not 0 <= port <= 65535:
        raise ListenAddressError(f"--listen {value!r}: the port must be 0-65535")
    return host, port


def serve(db: Database, host: str, port: int, admin_token: Optional[str]) -> None:
    """Run until SIGTERM/SIGINT (uvicorn handles both and drains requests in flight)."""
    app = create_app(db, admin_token)
    logger.info("discovery API on http://%s:%d (OpenAPI at /openapi.json); database %s; admin API %s",
                host if ":" not in host else f"[{host}]", port, db.location.display(),
                "enabled" if admin_token else "disabled (no token)")
    uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                  server_header=False)).run()
