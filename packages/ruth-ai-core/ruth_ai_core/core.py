"""Ruth AI Core: subscriptions, camera watches, routes to the models, events and counts.

The whole data path runs on one event loop thread (uvloop when installed):
camera watches wake when a gate expects a frame, selected frames go to their
model's route, answers become events. One thread instead of one per camera,
no lock per frame, no thread hand-off per request: that is what lets one core
keep up with hundreds of cameras on two CPU cores. Every public method is
safe to call from any thread; it runs its work on the loop.

``Core.apply`` takes the desired set of assignments and changes only what
differs: new pairs get a subscription (and their camera a watch), removed
pairs are retired (their camera's watch stops with its last one), pairs whose
FPS, in-flight bound or config changed are replaced. Dispatching never
blocks: a frame is sent, waits a bounded time for room at the model, or is
dropped and counted (``DropReason``).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Optional, TypeVar

import uvloop

from ai_model_container.contract.frame_reader import FrameReader

from .assignments import Assignment, SubscriptionKey
from .cameras import DEFAULT_POLL_INTERVAL_S, CameraWatch, SelectedFrame, Wakeups
from .events import EventSink
from .metrics import CameraSample, CoreMetrics, CoreSample, ModelSample, PairSample
from .model_link import Failure
from .router import Health, Pending, Router, RouteSettings
from .routing import RoutingConfig
from .subscription import LATENCY_BUCKETS, DropReason, Subscription, SubscriptionCounts

logger = logging.getLogger(__name__)

T = TypeVar("T")
STOP_GRACE_S = 1.0
"""Beyond the request timeout, how long stop waits for answers still owed."""


@dataclass(frozen=True)
class ReconcileResult:
    added: list[SubscriptionKey] = field(default_factory=list)
    removed: list[SubscriptionKey] = field(default_factory=list)
    changed: list[SubscriptionKey] = field(default_factory=list)
    unchanged: list[SubscriptionKey] = field(default_factory=list)
    rejected: list[tuple[SubscriptionKey, str]] = field(default_factory=list)
    """Assignments the core could not take (for example a config it cannot encode), with the reason."""

    @property
    def touched(self) -> bool:
        return bool(self.added or self.removed or self.changed)


class _PairTotals:
    """The counters of a pair's retired subscriptions, folded together so metrics never go backwards."""

    def __init__(self) -> None:
        self.counts = SubscriptionCounts()
        self.detections = 0
        self.latency_buckets = [0] * (len(LATENCY_BUCKETS) + 1)
        self.latency_sum = 0.0

    def add(self, subscription: Subscription) -> None:
        self.counts += subscription.counts()
        self.detections += subscription.detections
        self.latency_buckets = [a + b for a, b in zip(self.latency_buckets, subscription.latency_buckets)]
        self.latency_sum += subscription.latency_sum


class Core:
    def __init__(self, sink: EventSink, routing: Optional[RoutingConfig] = None,
                 settings: RouteSettings = RouteSettings(), socket_dir: Optional[str] = None,
                 reader: Optional[FrameReader] = None, poll_interval_s: float = DEFAULT_POLL_INTERVAL_S) -> None:
        self.sink = sink
        self.reader = reader or FrameReader()
        self.poll_interval_s = poll_interval_s
        self.metrics = CoreMetrics(self._sample)
        self.loop = uvloop.new_event_loop()
        self.router = Router(self.loop, self._answered, routing, settings, socket_dir)
        self._wakeups = Wakeups(self.loop)
        self._cameras: dict[str, CameraWatch] = {}
        self._active: dict[SubscriptionKey, Subscription] = {}
        self._retiring: list[Subscription] = []
        self._retired: dict[SubscriptionKey, _PairTotals] = {}
        self._stopping = False
        self._stopped = False
        self._totals: Optional[SubscriptionCounts] = None
        self._thread = threading.Thread(target=self._run_loop, name="core-loop", daemon=True)
        self._thread.start()

    # -- running on the loop ------------------------------------------------------------

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def _on_loop(self, function: Callable[[], T]) -> T:
        """Run ``function`` on the loop and return its result; directly once the loop has stopped."""
        if self._stopped or threading.current_thread() is self._thread:
            return function()

        async def call() -> T:
            return function()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result()

    def _await_on_loop(self, coroutine: Callable[[], Awaitable[T]]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine(), self.loop).result()

    # -- desired state ------------------------------------------------------------------

    def apply(self, desired: Iterable[Assignment]) -> ReconcileResult:
        """Make the running subscriptions match ``desired`` (already checked against the registry)."""
        wanted = {assignment.key: assignment for assignment in desired}
        return self._await_on_loop(lambda: self._apply(wanted))

    async def _apply(self, wanted: dict[SubscriptionKey, Assignment]) -> ReconcileResult:
        result = ReconcileResult()
        if self._stopping:
            return result
        for key in sorted(set(self._active) - set(wanted)):
            self._retire(key)
            result.removed.append(key)
        for key, assignment in sorted(wanted.items()):
            current = self._active.get(key)
            if current is not None and current.assignment == assignment:
                result.unchanged.append(key)
                continue
            try:
                subscription = Subscription(assignment)
            except ValueError as exc:  # a config JSON cannot carry (NaN): the core cannot send it
                result.rejected.append((key, str(exc)))
                logger.error("assignment %s -> %s rejected: %s", key[0], key[1], exc)
                continue
            if current is not None:
                self._retire(key)
                result.changed.append(key)
            else:
                result.added.append(key)
            self._add(subscription)
        in_use = {model_id for _, model_id in self._active}
        for route in self.router.routes():
            if route.model_id not in in_use:
                await self.router.retire(route.model_id)
        if result.touched:
            logger.info("reconciled: %d added, %d removed, %d changed, %d unchanged",
                        len(result.added), len(result.removed), len(result.changed), len(result.unchanged))
        return result

    def set_routing(self, routing: RoutingConfig) -> list[str]:
        """Switch to a new routing file; returns the models whose socket moved."""
        return self._await_on_loop(lambda: self.router.set_routing(routing))

    def _add(self, subscription: Subscription) -> None:
        self.router.ensure(subscription.model_id)
        self._active[subscription.key] = subscription
        watch = self._cameras.get(subscription.camera_id)
        if watch is None:
            watch = CameraWatch(subscription.camera_id, self.reader, self._dispatch, self._wakeups, self.loop,
                                self.poll_interval_s)
            self._cameras[subscription.camera_id] = watch
            watch.subscriptions[subscription.model_id] = subscription
            watch.start()
        else:
            watch.subscriptions[subscription.model_id] = subscription

    def _retire(self, key: SubscriptionKey) -> None:
        camera_id, model_id = key
        subscription = self._active.pop(key)
        subscription.retire()
        self._retiring.append(subscription)
        watch = self._cameras[camera_id]
        watch.subscriptions.pop(model_id, None)
        if not watch.subscriptions:
            del self._cameras[camera_id]
            watch.stop()

    # -- the data path (loop thread) ----------------------------------------------------

    def _dispatch(self, subscription: Subscription, frame: SelectedFrame) -> None:
        """A frame the gate selected: to the model's route, or dropped with a reason; never blocks."""
        subscription.selected += 1
        route = self.router.get(subscription.model_id)
        if self._stopping or not subscription.active or route is None:
            subscription.drop(DropReason.STOPPING)
        elif not route.available:
            subscription.drop(DropReason.MODEL_UNAVAILABLE)
        elif subscription.outstanding >= subscription.max_in_flight:
            subscription.drop(DropReason.IN_FLIGHT_LIMIT)
        else:
            try:
                route.submit(Pending(subscription, frame, time.monotonic()))
            except Exception:
                logger.exception("camera %s model %s frame %d: internal error", frame.camera_id,
                                 subscription.model_id, frame.frame_id)
                subscription.queued = max(subscription.queued - 1, 0)
                subscription.drop(DropReason.INTERNAL)

    def _answered(self, pending: Pending, response: Optional[dict[str, Any]], failure: Optional[Failure]) -> None:
        """One answer, one event: the daemon's response, or the core's own error when none came back."""
        subscription, frame = pending.subscription, pending.frame
        latency_s = time.perf_counter() - pending.sent_at
        if failure is not None:
            code, error, detections, metadata = failure[0].value, failure[1], [], {}
        else:
            assert response is not None
            code, error = response.get("error_code"), response.get("error")
            detections, metadata = response.get("detections") or [], response.get("metadata") or {}
        subscription.answered(code is None, latency_s, len(detections))
        self.sink.write({
            "camera_id": frame.camera_id, "model_id": subscription.model_id, "frame_id": frame.frame_id,
            "frame_timestamp_ns": frame.timestamp_ns, "sent_at": pending.sent_wall,
            "latency_ms": round(latency_s * 1000.0, 3), "detections": detections, "width": frame.width,
            "height": frame.height, "error": error, "error_code": code, "metadata": metadata,
        })

    # -- observation --------------------------------------------------------------------

    def subscriptions(self) -> list[Subscription]:
        return self._on_loop(lambda: list(self._active.values()))

    def cameras(self) -> list[CameraWatch]:
        return self._on_loop(lambda: list(self._cameras.values()))

    def counts(self) -> dict[SubscriptionKey, SubscriptionCounts]:
        """Counts per pair over the whole run, retired subscriptions included."""
        return self._on_loop(self._counts)

    def _counts(self) -> dict[SubscriptionKey, SubscriptionCounts]:
        self._fold_retired()
        totals = {key: pair.counts for key, pair in self._retired.items()}
        for subscription in (*self._retiring, *self._active.values()):
            totals[subscription.key] = totals.get(subscription.key, SubscriptionCounts()) + subscription.counts()
        return totals

    def total(self) -> SubscriptionCounts:
        return sum(self.counts().values(), SubscriptionCounts())

    def _fold_retired(self) -> None:
        """Retired subscriptions with nothing left in flight become their pair's totals."""
        still: list[Subscription] = []
        for subscription in self._retiring:
            if subscription.outstanding:
                still.append(subscription)
            else:
                self._retired.setdefault(subscription.key, _PairTotals()).add(subscription)
        self._retiring = still

    def _sample(self) -> CoreSample:
        return self._on_loop(self._sample_now)

    def _sample_now(self) -> CoreSample:
        self._fold_retired()
        pairs: dict[SubscriptionKey, PairSample] = {}
        for key, totals in self._retired.items():
            counts = totals.counts
            pairs[key] = PairSample(key[0], key[1], None, counts.selected, counts.results, counts.errors,
                                    totals.detections, dict(counts.dropped), list(totals.latency_buckets),
                                    totals.latency_sum)
        for subscription in (*self._retiring, *self._active.values()):
            pair = pairs.setdefault(subscription.key, PairSample(
                subscription.camera_id, subscription.model_id, None, 0, 0, 0, 0, {},
                [0] * (len(LATENCY_BUCKETS) + 1), 0.0))
            pair.selected += subscription.selected
            pair.results += subscription.results
            pair.errors += subscription.errors
            pair.detections += subscription.detections
            pair.skipped = dict(Counter(pair.skipped) + subscription.dropped)
            pair.latency_buckets = [a + b for a, b in zip(pair.latency_buckets, subscription.latency_buckets)]
            pair.latency_sum += subscription.latency_sum
            if subscription.active:
                pair.target_fps = subscription.assignment.fps
        models = [ModelSample(route.model_id, None if route.health is Health.UNKNOWN else route.health is Health.HEALTHY,
                              dict(route.outcomes), route.in_flight, route.queued, route.stats)
                  for route in self.router.routes()]
        cameras = [CameraSample(watch.camera_id, watch.state == "streaming", dict(watch.ring_errors))
                   for watch in self._cameras.values()]
        return CoreSample(list(pairs.values()), models, cameras, self.sink.dropped)

    # -- shutdown -----------------------------------------------------------------------

    def stop(self) -> SubscriptionCounts:
        """Stop every camera, wait for answers still owed, flush the sink; returns the run's totals."""
        if not self._stopped:
            self._await_on_loop(self._stop)
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self._stopped = True
            self.sink.flush()
            self._totals = self.total()
        assert self._totals is not None
        return self._totals

    async def _stop(self) -> None:
        self._stopping = True
        for watch in self._cameras.values():
            watch.stop()
        self._cameras.clear()
        for key in list(self._active):
            subscription = self._active.pop(key)
            subscription.retire()
            self._retiring.append(subscription)
        await self.router.close()
