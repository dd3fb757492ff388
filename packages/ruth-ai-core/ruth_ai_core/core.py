"""Ruth AI Core: subscriptions, stream agents, dispatch to the router, events and counts.

``Core.apply`` takes the desired set of assignments and changes only what
differs: new pairs get a subscription (and their camera an agent), removed
pairs are retired (their camera's agent stops with its last one), pairs whose
FPS, in-flight bound or config changed are replaced. Dispatch never blocks the
agent: a frame is sent only if the pair has an in-flight slot and the model a
free pooled connection; otherwise it is dropped and counted.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Iterable, Optional

from ai_model_container.contract.client import ClientError, ModelUnavailable, RequestTimedOut, inference_request
from ai_model_container.contract.frame_reader import FrameReader
from ai_model_container.contract.schema import StatsResponse

from .agent import DEFAULT_POLL_INTERVAL_S, SelectedFrame, StreamAgent
from .assignments import Assignment, SubscriptionKey
from .events import CoreErrorCode, JsonLinesSink, ResultEvent
from .metrics import CoreMetrics
from .router import Health, Lease, ModelRoute, Router, RouteSettings
from .routing import RoutingConfig
from .subscription import DropReason, Subscription, SubscriptionCounts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReconcileResult:
    added: list[SubscriptionKey] = field(default_factory=list)
    removed: list[SubscriptionKey] = field(default_factory=list)
    changed: list[SubscriptionKey] = field(default_factory=list)
    unchanged: list[SubscriptionKey] = field(default_factory=list)

    @property
    def touched(self) -> bool:
        return bool(self.added or self.removed or self.changed)


class Core:
    def __init__(self, sink: JsonLinesSink, routing: Optional[RoutingConfig] = None,
                 settings: RouteSettings = RouteSettings(), socket_dir: Optional[str] = None,
                 reader: Optional[FrameReader] = None, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.sink = sink
        self.metrics = CoreMetrics(self._daemon_stats)
        self.router = Router(routing, settings, socket_dir, on_health=self._on_health)
        self.reader = reader or FrameReader()
        self.poll_interval_s = poll_interval_s
        self._agents: dict[str, StreamAgent] = {}
        self._active: dict[SubscriptionKey, Subscription] = {}
        self._all: list[Subscription] = []
        self._lock = threading.Lock()
        self._stopping = False

    # -- desired state ------------------------------------------------------------------

    def apply(self, desired: Iterable[Assignment]) -> ReconcileResult:
        """Make the running subscriptions match ``desired`` (already checked against the registry)."""
        wanted = {assignment.key: assignment for assignment in desired}
        result = ReconcileResult()
        with self._lock:
            for key in sorted(set(self._active) - set(wanted)):
                self._retire(key)
                result.removed.append(key)
            for key, assignment in sorted(wanted.items()):
                current = self._active.get(key)
                if current is not None and current.assignment == assignment:
                    result.unchanged.append(key)
                    continue
                if current is not None:
                    self._retire(key)
                    result.changed.append(key)
                else:
                    result.added.append(key)
                self._add(assignment)
            in_use = {model_id for _, model_id in self._active}
        for route in self.router.routes():
            if route.model_id not in in_use:
                self.router.retire(route.model_id)
        if result.touched:
            logger.info("reconciled: %d added, %d removed, %d changed, %d unchanged",
                        len(result.added), len(result.removed), len(result.changed), len(result.unchanged))
        return result

    def _add(self, assignment: Assignment) -> None:
        self.router.ensure(assignment.model)
        subscription = Subscription(assignment, self.metrics)
        self._active[assignment.key] = subscription
        self._all.append(subscription)
        agent = self._agents.get(assignment.camera)
        if agent is None:
            agent = StreamAgent(assignment.camera, self.reader, self.dispatch, self.poll_interval_s)
            self._agents[assignment.camera] = agent
            agent.put(subscription)
            agent.start()
        else:
            agent.put(subscription)

    def _retire(self, key: SubscriptionKey) -> None:
        camera_id, model_id = key
        subscription = self._active.pop(key)
        subscription.retire()
        agent = self._agents[camera_id]
        agent.remove(model_id)
        if not agent.subscriptions:
            del self._agents[camera_id]
            agent.stop()

    # -- the data path ------------------------------------------------------------------

    def dispatch(self, subscription: Subscription, frame: SelectedFrame) -> None:
        """Called by the camera's agent for a frame the gate selected; never blocks."""
        subscription.select()
        route = self.router.get(subscription.model_id)
        if self._stopping or not subscription.active or route is None:
            subscription.drop(DropReason.STOPPING)
            return
        if not route.available:
            subscription.drop(DropReason.MODEL_UNAVAILABLE)
            return
        if not subscription.begin():
            subscription.drop(DropReason.IN_FLIGHT_LIMIT)
            return
        lease = route.try_lease()
        if lease is None:
            subscription.drop(DropReason.STOPPING if route.closed else DropReason.POOL_EXHAUSTED, in_flight=True)
            return
        try:
            route.submit(self._request, subscription, route, lease, frame)
        except RuntimeError:  # the route's executor shut down under us
            route.release(lease)
            subscription.drop(DropReason.STOPPING, in_flight=True)

    def _request(self, subscription: Subscription, route: ModelRoute, lease: Lease, frame: SelectedFrame) -> None:
        """One request on a pooled connection, turned into one event; runs on the route's worker."""
        try:
            sent_at = time.time()
            started = time.perf_counter()
            request = inference_request(subscription.model_id, frame.camera_id, frame.frame_id, frame.width,
                                        frame.height, subscription.config, frame.timestamp_ns)
            try:
                response = route.infer(lease, request)
                error, code = response.error, (response.error_code.value if response.error_code else None)
                detections, metadata = response.detections, response.metadata
            except ClientError as exc:
                error, code, detections, metadata = str(exc), _client_error_code(exc).value, [], {}
            finally:
                route.release(lease)
            latency_s = time.perf_counter() - started
            event = ResultEvent(
                camera_id=frame.camera_id, model_id=subscription.model_id, frame_id=frame.frame_id,
                frame_timestamp_ns=frame.timestamp_ns, sent_at=sent_at, latency_ms=round(latency_s * 1000.0, 3),
                detections=detections, width=frame.width, height=frame.height, error=error, error_code=code,
                metadata=metadata,
            )
            self.sink.write(event)
        except Exception:
            logger.exception("camera %s model %s frame %d: internal error", frame.camera_id, subscription.model_id, frame.frame_id)
            subscription.drop(DropReason.INTERNAL, in_flight=True)
            return
        subscription.complete(code, latency_s, len(detections))

    # -- observation --------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        with self._lock:
            return list(self._active.values())

    def agents(self) -> list[StreamAgent]:
        with self._lock:
            return list(self._agents.values())

    def counts(self) -> dict[SubscriptionKey, SubscriptionCounts]:
        """Counts per pair over the whole run, retired subscriptions included."""
        totals: dict[SubscriptionKey, SubscriptionCounts] = {}
        with self._lock:
            every = list(self._all)
        for subscription in every:
            totals[subscription.key] = totals.get(subscription.key, SubscriptionCounts()) + subscription.counts()
        return totals

    def total(self) -> SubscriptionCounts:
        return sum(self.counts().values(), SubscriptionCounts())

    def _daemon_stats(self) -> list[tuple[str, Optional[StatsResponse]]]:
        return [(route.model_id, route.stats) for route in self.router.routes()]

    def _on_health(self, model_id: str, health: Health, reason: Optional[str]) -> None:
        self.metrics.healthy.labels(model_id).set(1 if health is Health.HEALTHY else 0)

    # -- shutdown -----------------------------------------------------------------------

    def stop(self) -> SubscriptionCounts:
        """Stop every agent, wait for requests in flight, flush the sink; returns the run's totals."""
        with self._lock:
            self._stopping = True
            agents = list(self._agents.values())
            self._agents.clear()
            for subscription in self._active.values():
                subscription.retire()
            self._active.clear()
        for agent in agents:
            agent.stop()
        self.router.close()
        self.sink.flush()
        return self.total()


def _client_error_code(exc: ClientError) -> CoreErrorCode:
    if isinstance(exc, ModelUnavailable):
        return CoreErrorCode.MODEL_UNAVAILABLE
    if isinstance(exc, RequestTimedOut):
        return CoreErrorCode.REQUEST_TIMEOUT
    return CoreErrorCode.CONNECTION_FAILED
