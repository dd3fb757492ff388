"""Routes frames to model daemons: pipelined connections, an in-flight limit and a health state per model.

Each model gets a ``ModelRoute`` on the core's event loop, with up to
``max_in_flight`` requests out at once on a handful of pipelined connections
(``ModelLink``). The window is sized from the daemon itself (the describe
op): it starts at ``limits.max_concurrent_requests`` workers x
``batching.max_batch_size`` (every worker busy, nothing queued in the
daemon, where a slow model's queue would run into its ``queue_wait_ms``)
and adapts to what the daemon reports in each answer
(``server_ms``, the time the request spent inside the daemon): while frames
wait in the core and answers come back well inside the daemon's
``queue_wait_ms``, the window grows; when they approach it, or the daemon
answers OVERLOADED, it shrinks. A cheap model thus gets hundreds of requests
in flight, a slow one keeps its queue in the core, where it is bounded: a
selected frame that finds the window full waits at most one period of its
subscription, then it is stale and dropped as ``model_saturated``. Frames
are never retried and never wait longer.

A monitor asks the daemon's health (and stats) op every ``health_interval_s``
on a connection of its own. A model whose socket is missing, whose
connection breaks, or whose health op says it is not ready is marked
unhealthy: its frames are dropped at once as ``model_unavailable``, nothing
is sent, and the other models carry on. It is healthy again as soon as its
health op answers READY. A request that would break the connection for the
others (bigger than the daemon's ``limits.max_message_bytes``) is never sent.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import time
from collections import Counter, deque
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Optional

import orjson

from ai_model_container.contract.peer import UntrustedPeer, allowed_uids, check_daemon
from ai_model_container.contract.schema import StatsResponse

from .cameras import SelectedFrame
from .events import CoreErrorCode
from .model_link import Failure, LinkClosed, ModelLink
from .routing import RoutingConfig
from .subscription import DropReason, Subscription

logger = logging.getLogger(__name__)

DEFAULT_CONNECT_TIMEOUT_S = 0.5
DEFAULT_REQUEST_TIMEOUT_S = 5.0
DEFAULT_HEALTH_INTERVAL_S = 1.0
MAX_CONNECTIONS = 4
MAX_PIPELINED_PER_CONNECTION = 256
"""The daemon stops reading a connection owed this many answers (CONTRACT.md, "Limits")."""
SWEEP_INTERVAL_S = 0.02
"""How often frames waiting for room are checked for staleness while any wait."""


class Health(str, Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True)
class RouteSettings:
    connections: Optional[int] = None
    """Connections per model; None: the daemon's worker count, 1 to 4."""
    max_in_flight: Optional[int] = None
    """Requests out at once per model; None: sized from the daemon's describe op."""
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    health_interval_s: float = DEFAULT_HEALTH_INTERVAL_S
    daemon_uids: Optional[frozenset[int]] = None
    """Who may serve a model socket; None: $RUTH_DAEMON_UIDS, else the socket directory's users (``contract.peer``)."""


class Pending:
    """A selected frame in the route's custody, from selection to its answer (or drop)."""

    __slots__ = ("subscription", "frame", "expires_at", "sent_at", "sent_wall")

    def __init__(self, subscription: Subscription, frame: SelectedFrame, now: float) -> None:
        self.subscription = subscription
        self.frame = frame
        self.expires_at = now + subscription.period_s
        self.sent_at = 0.0
        self.sent_wall = 0.0


Answered = Callable[[Pending, Optional[dict[str, Any]], Optional[Failure]], None]
"""The core's side: turn one answer (a response, or the failure) into an event and counts."""
HealthListener = Callable[[str, Health, Optional[str]], None]


class ModelRoute:
    """Everything the core needs to talk to one model; event-loop thread only."""

    def __init__(self, model_id: str, endpoint: Path, settings: RouteSettings, loop: asyncio.AbstractEventLoop,
                 on_answer: Answered, on_health: Optional[HealthListener] = None) -> None:
        self.model_id = model_id
        self.endpoint = endpoint
        self.settings = settings
        self.health = Health.UNKNOWN
        self.reason: Optional[str] = None
        self.stats: Optional[StatsResponse] = None
        self.outcomes: Counter[str] = Counter()
        """Answers by outcome: ``ok`` or the error code (the daemon's or the core's own)."""
        self.in_flight = 0
        self.max_in_flight = settings.max_in_flight or 2
        self.max_message_bytes = 1 << 20
        self._window = _Window(self.max_in_flight, self.max_in_flight, 0.0)
        self.closed = False
        self._loop = loop
        self._on_answer = on_answer
        self._on_health = on_health
        self._connections = settings.connections or 1
        self._described = False
        self._links: list[ModelLink] = []
        self._connecting = 0
        self._waiting: deque[Pending] = deque()
        self._sweeper: Optional[asyncio.TimerHandle] = None
        self._wake = asyncio.Event()
        self._trusted = allowed_uids(settings.daemon_uids)
        self._monitor = loop.create_task(self._monitor_loop(), name=f"health-{model_id}")

    @property
    def available(self) -> bool:
        """False while the model is known to be unhealthy: frames are dropped at once."""
        return self.health is not Health.UNHEALTHY

    @property
    def queued(self) -> int:
        return len(self._waiting)

    # -- the data path ------------------------------------------------------------------

    def submit(self, pending: Pending) -> None:
        """Send the frame now if the model has room, else let it wait (at most one period)."""
        subscription = pending.subscription
        subscription.queued += 1
        self._waiting.append(pending)
        self._pump()
        if self._waiting and self._sweeper is None:
            self._sweeper = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _pump(self) -> None:
        """Send waiting frames while the model has room and a connection; drop the stale ones on the way."""
        waiting = self._waiting
        if not waiting or not self._described:
            return
        now = time.monotonic()
        while waiting and self.in_flight < self.max_in_flight:
            link = self._free_link()
            if link is None:
                return
            pending = waiting.popleft()
            subscription = pending.subscription
            subscription.queued -= 1
            if pending.expires_at < now:
                subscription.drop(DropReason.MODEL_SATURATED)
                continue
            self._send(link, pending)

    def _send(self, link: ModelLink, pending: Pending) -> None:
        subscription, frame = pending.subscription, pending.frame
        pending.sent_wall = time.time()
        body = subscription.request(frame.frame_id, frame.width, frame.height, frame.timestamp_ns, pending.sent_wall)
        if len(body) > self.max_message_bytes:
            subscription.drop(DropReason.REQUEST_TOO_LARGE)
            return
        pending.sent_at = time.perf_counter()
        try:
            link.send(body, lambda answer, failure: self._answered(link, pending, answer, failure))
        except LinkClosed:
            subscription.drop(DropReason.MODEL_UNAVAILABLE)
            return
        subscription.in_flight += 1
        self.in_flight += 1

    def _answered(self, link: ModelLink, pending: Pending, body: Optional[bytes], failure: Optional[Failure]) -> None:
        self.in_flight -= 1
        response: Optional[dict[str, Any]] = None
        if body is not None:
            response, failure = _decode(body, pending)
            if failure is not None:
                link.close(failure[1])  # answers no longer line up with requests on this connection
        if failure is not None and failure[0] is not CoreErrorCode.REQUEST_TIMEOUT:
            self.mark_unhealthy(failure[1])
        elif failure is not None:
            self._wake.set()  # a timeout: let the monitor look now
        elif response is not None:
            code = response.get("error_code")
            if code == "MODEL_NOT_READY":
                self.mark_unhealthy(f"daemon answered MODEL_NOT_READY: {response.get('error')}")
            elif not self.settings.max_in_flight:
                self.max_in_flight = self._window.after(code, response.get("metadata"), bool(self._waiting),
                                                        self.max_in_flight)
        self.outcomes[failure[0].value if failure else (response or {}).get("error_code") or "ok"] += 1
        self._on_answer(pending, response, failure)
        self._pump()

    def _sweep(self) -> None:
        """Drop frames that waited a whole period of their subscription without room at the model."""
        self._sweeper = None
        now = time.monotonic()
        kept: deque[Pending] = deque()
        for pending in self._waiting:
            if pending.expires_at < now:
                pending.subscription.queued -= 1
                pending.subscription.drop(DropReason.MODEL_SATURATED if self.available else DropReason.MODEL_UNAVAILABLE)
            else:
                kept.append(pending)
        self._waiting = kept
        self._pump()
        if self._waiting and not self.closed:
            self._sweeper = self._loop.call_later(SWEEP_INTERVAL_S, self._sweep)

    def _drop_waiting(self, reason: DropReason) -> None:
        waiting, self._waiting = self._waiting, deque()
        for pending in waiting:
            pending.subscription.queued -= 1
            pending.subscription.drop(reason)

    # -- connections --------------------------------------------------------------------

    def _free_link(self) -> Optional[ModelLink]:
        """The open connection with the fewest requests owed; opens more up to the route's count."""
        open_links = [link for link in self._links if not link.closed]
        if len(open_links) + self._connecting < self._connections and self.available:
            self._connecting += 1
            self._loop.create_task(self._connect())
        if not open_links:
            return None
        return min(open_links, key=lambda link: link.owed)

    async def _connect(self) -> None:
        try:
            link = await self._open_link()
        except OSError as exc:
            self.mark_unhealthy(f"cannot connect to {self.endpoint}: {exc.strerror or exc}")
            return
        finally:
            self._connecting -= 1
        if self.closed:
            link.close("the route is closed")
            return
        self._links.append(link)
        self._pump()

    async def _open_link(self) -> ModelLink:
        """A connection to the daemon, once the kernel says its peer is one we trust (``contract.peer``):
        a squatter that bound the socket first is refused before anything is sent."""
        transport, link = await asyncio.wait_for(self._loop.create_unix_connection(
            lambda: ModelLink(self._loop, self.settings.request_timeout_s, 64 << 20, self._link_lost),
            str(self.endpoint)), self.settings.connect_timeout_s)
        try:
            check_daemon(transport.get_extra_info("socket"), self.endpoint, self._trusted)
        except UntrustedPeer as exc:
            link.close(str(exc))
            raise OSError(errno.EPERM, str(exc)) from None
        return link

    def _link_lost(self, link: ModelLink, reason: str) -> None:
        if link in self._links:
            self._links.remove(link)

    # -- health -------------------------------------------------------------------------

    def mark_unhealthy(self, reason: str) -> None:
        self._set_health(Health.UNHEALTHY, reason)
        self._drop_waiting(DropReason.MODEL_UNAVAILABLE)

    def _set_health(self, health: Health, reason: Optional[str]) -> None:
        changed = health is not self.health
        self.health, self.reason = health, reason
        if changed:
            if health is Health.UNHEALTHY:
                logger.warning("model %s is unhealthy (%s): failing fast until its health op answers", self.model_id,
                               reason)
            else:
                logger.info("model %s is %s at %s", self.model_id, health.value, self.endpoint)
            if self._on_health is not None:
                self._on_health(self.model_id, health, reason)

    async def _monitor_loop(self) -> None:
        probe: Optional[ModelLink] = None
        while not self.closed:
            try:
                if probe is None or probe.closed:
                    probe = await self._open_link()
                await self._probe(probe)
            except (OSError, asyncio.TimeoutError, LinkClosed) as exc:
                reason = f"cannot reach {self.endpoint}: {getattr(exc, 'strerror', None) or exc or 'timed out'}"
                if probe is not None:
                    probe.close(reason)
                    probe = None
                self.mark_unhealthy(reason)
            except _NotReady as exc:
                self.mark_unhealthy(str(exc))
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.health_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
        if probe is not None:
            probe.close("the route is closed")

    async def _probe(self, probe: ModelLink) -> None:
        health = await self._ask(probe, b'{"op":"health"}')
        if not health.get("ready"):
            raise _NotReady(f"daemon reports {health.get('status')}: {health.get('error') or 'not ready'}")
        if not self._described:
            self._size_from(await self._ask(probe, b'{"op":"describe"}'))
        self.stats = StatsResponse.model_validate(await self._ask(probe, b'{"op":"stats"}'))
        self._set_health(Health.HEALTHY, None)
        self._pump()

    async def _ask(self, probe: ModelLink, body: bytes) -> dict[str, Any]:
        answer: asyncio.Future[dict[str, Any]] = self._loop.create_future()

        def deliver(reply: Optional[bytes], failure: Optional[Failure]) -> None:
            if answer.done():
                return
            if failure is not None:
                answer.set_exception(LinkClosed(failure[1]))
                return
            try:
                decoded = orjson.loads(reply or b"")
            except orjson.JSONDecodeError as exc:
                answer.set_exception(LinkClosed(f"malformed answer from the daemon: {exc}"))
                return
            if not isinstance(decoded, dict) or decoded.get("error_code") and "op" not in decoded:
                answer.set_exception(_NotReady(f"daemon refused {body.decode()}: {decoded}"))
                return
            answer.set_result(decoded)

        probe.send(body, deliver)
        return await asyncio.wait_for(answer, self.settings.request_timeout_s)

    def _size_from(self, described: dict[str, Any]) -> None:
        """The route's size from the daemon's own limits (describe op), unless the settings fix it."""
        limits = described.get("limits") or {}
        batching = (described.get("model") or {}).get("batching") or {}
        workers = int(limits.get("max_concurrent_requests") or 1)
        batch = int(batching.get("max_batch_size") or 1)
        self._connections = self.settings.connections or min(MAX_CONNECTIONS, max(1, workers))
        smallest = max(1, workers * batch)
        self._window = _Window(smallest, max(smallest, MAX_PIPELINED_PER_CONNECTION * self._connections),
                               float(limits.get("queue_wait_ms") or 100))
        self.max_in_flight = self.settings.max_in_flight or smallest
        self.max_message_bytes = int(limits.get("max_message_bytes") or self.max_message_bytes)
        self._described = True
        logger.info("model %s: up to %d requests in flight on %d connection(s)", self.model_id, self.max_in_flight,
                    self._connections)

    # -- shutdown -----------------------------------------------------------------------

    async def close(self, timeout_s: float) -> None:
        """Drop waiting frames, let requests in flight finish (up to ``timeout_s``), close every connection."""
        self._drop_waiting(DropReason.STOPPING)
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.closed = True
        self._wake.set()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for link in list(self._links):
            link.close("the core is stopping")
        self._monitor.cancel()
        try:
            await self._monitor
        except asyncio.CancelledError:
            pass


class _Window:
    """Additive-increase, multiplicative-decrease of a route's in-flight limit, from the daemon's server_ms.

    Grows by an eighth once per window of answers while frames wait in the core and the
    daemon answers within a quarter of its queue_wait_ms; shrinks by a quarter when an
    answer took more than half of it, and by half on OVERLOADED. Like TCP's congestion
    window it reacts to at most one sign of congestion per window of answers: the answers
    of one burst (cameras in step) all carry the same queueing, and counting each of them
    would collapse the window to its floor in one burst.
    """

    def __init__(self, smallest: int, largest: int, queue_wait_ms: float) -> None:
        self.smallest = smallest
        self.largest = largest
        self.queue_wait_ms = queue_wait_ms
        self._answers = 0
        self._calm = 0
        """Answers still to come before another decrease may count."""

    def after(self, code: Optional[str], metadata: Any, frames_wait: bool, limit: int) -> int:
        """The limit after one answer (``code`` None on success) when it was ``limit``."""
        if self._calm:
            self._calm -= 1
        server_ms = metadata.get("server_ms") if isinstance(metadata, dict) else None
        congested = code == "OVERLOADED" or isinstance(server_ms, (int, float)) and self.queue_wait_ms \
            and server_ms > self.queue_wait_ms / 2
        if congested:
            if self._calm:
                return limit
            self._calm, self._answers = limit, 0
            return max(self.smallest, limit // 2 if code == "OVERLOADED" else limit * 3 // 4)
        if frames_wait and isinstance(server_ms, (int, float)) and server_ms < self.queue_wait_ms / 4:
            self._answers += 1
            if self._answers >= limit:
                self._answers = 0
                return min(self.largest, limit + max(1, limit // 8))
        return limit


class _NotReady(Exception):
    """The daemon answered, and it is not ready (or refused a control op)."""


def _decode(body: bytes, pending: Pending) -> tuple[Optional[dict[str, Any]], Optional[Failure]]:
    """The response as a dict, or the failure when it is not an answer to ``pending``'s request."""
    try:
        response = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        return None, (CoreErrorCode.CONNECTION_FAILED, f"malformed response: {exc}")
    frame = pending.frame
    if not isinstance(response, dict) or response.get("frame_id") != frame.frame_id \
            or response.get("camera_id") != frame.camera_id:
        return None, (CoreErrorCode.CONNECTION_FAILED,
                      f"response out of step: wanted camera {frame.camera_id} frame {frame.frame_id}")
    return response, None


class Router:
    """The routes of every model in use, resolved through the routing file; event-loop thread only."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_answer: Answered, routing: Optional[RoutingConfig] = None,
                 settings: RouteSettings = RouteSettings(), socket_dir: Optional[str] = None,
                 on_health: Optional[HealthListener] = None) -> None:
        self.routing = routing or RoutingConfig()
        self.settings = settings
        self.socket_dir = socket_dir
        self._loop = loop
        self._on_answer = on_answer
        self._on_health = on_health
        self._routes: dict[str, ModelRoute] = {}

    def endpoint(self, model_id: str) -> Path:
        return self.routing.endpoint(model_id, self.socket_dir)

    def get(self, model_id: str) -> Optional[ModelRoute]:
        return self._routes.get(model_id)

    def ensure(self, model_id: str) -> ModelRoute:
        """The model's route, created (and its monitor started) on first use."""
        route = self._routes.get(model_id)
        if route is None:
            route = ModelRoute(model_id, self.endpoint(model_id), self.settings, self._loop, self._on_answer,
                               self._on_health)
            self._routes[model_id] = route
        return route

    async def retire(self, model_id: str) -> None:
        route = self._routes.pop(model_id, None)
        if route is not None:
            await route.close(self.settings.request_timeout_s)

    async def set_routing(self, routing: RoutingConfig) -> list[str]:
        """Switch to a new routing file; models whose endpoint changed get a fresh route. Returns them."""
        self.routing = routing
        moved = [model_id for model_id, route in self._routes.items() if route.endpoint != self.endpoint(model_id)]
        for model_id in moved:
            logger.info("model %s moves to %s", model_id, self.endpoint(model_id))
            await self.retire(model_id)
            self.ensure(model_id)
        return moved

    def routes(self) -> list[ModelRoute]:
        return list(self._routes.values())

    async def close(self) -> None:
        for model_id in list(self._routes):
            await self.retire(model_id)
