"""Routes requests to model daemons: a bounded connection pool and a health state per model.

Each model gets a ``ModelRoute``: at most ``pool_size`` persistent
connections (``ModelClient``), the same number of worker threads to use them,
and a monitor thread that asks the daemon's health (and stats) op every
``health_interval_s``. A model whose socket is missing, whose connection
breaks, or whose health op says it is not ready is marked unhealthy; while it
is, requests fail fast without touching the socket and the other models carry
on. It is marked healthy again as soon as its health op answers READY. A
failed inference is never sent again (CONTRACT.md, "Error codes": the runtime never retries).
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

from ai_model_container.contract.client import ClientError, ModelClient, ModelUnavailable, RequestTimedOut
from ai_model_container.contract.schema import ErrorCode, InferenceRequest, InferenceResponse, StatsResponse

from .routing import RoutingConfig

logger = logging.getLogger(__name__)

DEFAULT_POOL_SIZE = 4
DEFAULT_CONNECT_TIMEOUT_S = 0.5
DEFAULT_REQUEST_TIMEOUT_S = 5.0
DEFAULT_HEALTH_INTERVAL_S = 1.0


_CLOSES_CONNECTION = (ErrorCode.TIMEOUT, ErrorCode.MESSAGE_TOO_LARGE)
"""Error responses after which the daemon closes the connection (CONTRACT.md)."""


class Health(str, Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class RouteSettings:
    pool_size: int = DEFAULT_POOL_SIZE
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S


@dataclass
class Lease:
    """One pooled connection, held by one request at a time."""

    client: ModelClient
    generation: int


HealthListener = Callable[[str, Health, Optional[str]], None]


class ModelRoute:
    """Everything the core needs to talk to one model."""

    def __init__(self, model_id: str, endpoint: Path, settings: RouteSettings,
                 on_health: Optional[HealthListener] = None) -> None:
        self.model_id = model_id
        self.endpoint = endpoint
        self.settings = settings
        self.health = Health.UNKNOWN
        self.reason: Optional[str] = None
        self.stats: Optional[StatsResponse] = None
        self._on_health = on_health
        self._lock = threading.Lock()
        self._idle: list[Lease] = []
        self._leased = 0
        self._generation = 0
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=settings.pool_size, thread_name_prefix=f"model-{model_id}")
        self._wake = threading.Event()
        self._probe: Optional[ModelClient] = None
        self._monitor = threading.Thread(target=self._monitor_loop, name=f"health-{model_id}", daemon=True)
        self._monitor.start()

    @property
    def available(self) -> bool:
        """False while the model is known to be unhealthy: callers fail fast."""
        return self.health is not Health.UNHEALTHY

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def leased(self) -> int:
        return self._leased

    # -- the pool ---------------------------------------------------------------------

    def try_lease(self) -> Optional[Lease]:
        """A connection for one request, or None when all ``pool_size`` are in use; never blocks."""
        with self._lock:
            if self._closed or self._leased >= self.settings.pool_size:
                return None
            self._leased += 1
            while self._idle:
                lease = self._idle.pop()
                if lease.generation == self._generation:
                    return lease
                lease.client.close()
            client = ModelClient(self.endpoint, connect_timeout_s=self.settings.connect_timeout_s,
                                 request_timeout_s=self.settings.request_timeout_s)
            return Lease(client, self._generation)

    def release(self, lease: Lease) -> None:
        with self._lock:
            self._leased -= 1
            if self._closed or lease.generation != self._generation or not lease.client.connected:
                lease.client.close()
            else:
                self._idle.append(lease)

    def submit(self, work: Callable[..., Any], *args: Any) -> None:
        """Run ``work`` on one of this model's workers (there is one per connection, so it never waits)."""
        self._executor.submit(work, *args)

    def infer(self, lease: Lease, request: InferenceRequest) -> InferenceResponse:
        """Send one request on a leased connection; ClientError if no valid response came back.

        A missing socket or a broken connection marks the model unhealthy; a
        timeout asks the monitor to check it now. The lease is not released here.
        """
        try:
            response = lease.client.infer(request)
        except ModelUnavailable as exc:
            self.mark_unhealthy(str(exc))
            raise
        except RequestTimedOut:
            self._wake.set()
            raise
        except ClientError as exc:
            self.mark_unhealthy(str(exc))
            raise
        if response.error_code is ErrorCode.MODEL_NOT_READY:
            self.mark_unhealthy(f"daemon answered MODEL_NOT_READY: {response.error}")
        elif response.error_code in _CLOSES_CONNECTION:
            lease.client.close()  # the daemon hangs up after these; do not reuse the connection
        return response

    # -- health -----------------------------------------------------------------------

    def mark_unhealthy(self, reason: str) -> None:
        with self._lock:
            self._generation += 1  # connections opened before this point are not reused
            for lease in self._idle:
                lease.client.close()
            self._idle.clear()
        self._set_health(Health.UNHEALTHY, reason)

    def probe(self) -> None:
        """Ask the daemon's health and stats ops now and update the state."""
        if self._probe is None:
            self._probe = ModelClient(self.endpoint, connect_timeout_s=self.settings.connect_timeout_s,
                                      request_timeout_s=min(self.settings.request_timeout_s, 2.0))
        try:
            health = self._probe.health()
            if not health.ready:
                self._probe.close()
                self.mark_unhealthy(f"daemon reports {health.status.value}: {health.error or 'not ready'}")
                return
            self.stats = self._probe.stats()
        except ClientError as exc:
            self._probe.close()
            self.mark_unhealthy(str(exc))
            return
        self._set_health(Health.HEALTHY, None)

    def _set_health(self, health: Health, reason: Optional[str]) -> None:
        with self._lock:
            changed = health is not self.health
            self.health, self.reason = health, reason
        if changed:
            if health is Health.UNHEALTHY:
                logger.warning("model %s is unhealthy (%s): failing fast until its health op answers", self.model_id, reason)
            else:
                logger.info("model %s is %s at %s", self.model_id, health.value, self.endpoint)
            if self._on_health is not None:
                self._on_health(self.model_id, health, reason)

    def _monitor_loop(self) -> None:
        while not self._closed:
            self.probe()
            self._wake.wait(self.settings.health_interval_s)
            self._wake.clear()
        if self._probe is not None:
            self._probe.close()

    def close(self) -> None:
        """Stop the monitor, let requests in flight finish (bounded by the request timeout), close connections."""
        with self._lock:
            self._closed = True
        self._wake.set()
        self._executor.shutdown(wait=True)
        self._monitor.join()
        with self._lock:
            for lease in self._idle:
                lease.client.close()
            self._idle.clear()


class Router:
    """The routes of every model in use, resolved through the routing file."""

    def __init__(self, routing: Optional[RoutingConfig] = None, settings: RouteSettings = RouteSettings(),
                 socket_dir: Optional[str] = None, on_health: Optional[HealthListener] = None) -> None:
        self.routing = routing or RoutingConfig()
        self.settings = settings
        self.socket_dir = socket_dir
        self._on_health = on_health
        self._routes: dict[str, ModelRoute] = {}
        self._lock = threading.Lock()

    def endpoint(self, model_id: str) -> Path:
        return self.routing.endpoint(model_id, self.socket_dir)

    def get(self, model_id: str) -> Optional[ModelRoute]:
        return self._routes.get(model_id)

    def ensure(self, model_id: str) -> ModelRoute:
        """The model's route, created (and its monitor started) on first use."""
        with self._lock:
            route = self._routes.get(model_id)
            if route is None:
                route = ModelRoute(model_id, self.endpoint(model_id), self.settings, self._on_health)
                self._routes[model_id] = route
            return route

    def retire(self, model_id: str) -> None:
        with self._lock:
            route = self._routes.pop(model_id, None)
        if route is not None:
            route.close()

    def set_routing(self, routing: RoutingConfig) -> list[str]:
        """Switch to a new routing file; models whose endpoint changed get a fresh route. Returns them."""
        self.routing = routing
        moved = [model_id for model_id, route in list(self._routes.items()) if route.endpoint != self.endpoint(model_id)]
        for model_id in moved:
            logger.info("model %s moves to %s", model_id, self.endpoint(model_id))
            self.retire(model_id)
            self.ensure(model_id)
        return moved

    def routes(self) -> list[ModelRoute]:
        with self._lock:
            return list(self._routes.values())

    def close(self) -> None:
        for model_id in list(self._routes):
            self.retire(model_id)
