"""``ruth-model serve-all``: host every valid model under a models root, one process per model.

Each model runs as its own ``ruth-model serve`` child on its own socket, so a
crash in one model's code or native libraries cannot take another down. When
a child dies the supervisor restarts it with exponential backoff (reset once a
child has stayed up for ``stable_after_s``). Meanwhile the model shows as
unhealthy where clients look: the supervisor itself holds the model's socket
with a stand-in that answers health as DEGRADED with the reason ("exited with
code -9, restart 3 in 4.0 s") and refuses inference with MODEL_NOT_READY. The
stand-in is removed just before the child is started again; the child then
opens the socket once its model has loaded. Requests are never retried or
replayed: what was in flight in the dead process is lost, by design.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from ai_model_container.contract.frame_reader import FrameView
from ai_model_container.contract.model_config import ModelConfig
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import Detection, InferenceRequest
from ai_model_container.daemon.discovery import DiscoveredModel
from ai_model_container.daemon.server import IPCServer
from ai_model_container.daemon.service import ModelService
from ai_model_container.daemon.socket_claim import SocketInUseError
from ai_model_container.device import Device
from ai_model_container.handler import FrameInfo, InferenceHandler

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL_S = 1.0
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_STABLE_AFTER_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1


class _AbsentHandler(InferenceHandler):
    """The stand-in's handler: never called, because a DEGRADED service refuses inference first."""

    def preprocess(self, frame: FrameView, request: InferenceRequest) -> Any:
        raise RuntimeError("the model process is not running")

    def infer(self, inputs: Any) -> Any:
        raise RuntimeError("the model process is not running")

    def postprocess(self, outputs: Any, inputs: Any, frame: FrameInfo, request: InferenceRequest) -> Sequence[Detection]:
        raise RuntimeError("the model process is not running")


def stand_in_server(config: ModelConfig, model_dir: Path, socket: Path, reason: str) -> IPCServer:
    """A server on the model's socket that reports ``reason`` as DEGRADED health."""
    device = Device("none", "none", degraded_reason=reason)
    service = ModelService(config, _AbsentHandler(config, model_dir, device), device)
    return IPCServer(socket, service)


@dataclass
class ChildState:
    model: DiscoveredModel
    socket: Path
    process: Optional[subprocess.Popen] = None
    started_at: float = 0.0
    restarts: int = 0
    backoff_s: float = 0.0
    restart_at: Optional[float] = None
    last_exit: Optional[int] = None
    stand_in: Optional[IPCServer] = field(default=None, repr=False)

    @property
    def model_id(self) -> str:
        return self.model.config.model_id

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Supervisor:
    def __init__(self, models: list[DiscoveredModel], socket_dir: Optional[str] = None,
                 backoff_initial_s: float = DEFAULT_BACKOFF_INITIAL_S, backoff_max_s: float = DEFAULT_BACKOFF_MAX_S,
                 stable_after_s: float = DEFAULT_STABLE_AFTER_S, extra_args: Sequence[str] = ()) -> None:
        self.socket_dir = socket_dir
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.stable_after_s = stable_after_s
        self.extra_args = list(extra_args)
        self.children = [ChildState(model, socket_path(model.config.model_id, socket_dir)) for model in models]
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Start every model, keep them running until ``stop``, then stop them all."""
        try:
            for child in self.children:
                self._spawn(child)
            while not self._stop.wait(POLL_INTERVAL_S):
                for child in self.children:
                    self._tend(child, time.monotonic())
        finally:
            self._shutdown()

    def _tend(self, child: ChildState, now: float) -> None:
        if self._stop.is_set():
            return  # a Ctrl-C reaches the children too: their exits are not crashes
        if child.process is not None and child.process.poll() is not None:
            self._on_exit(child, now)
        if child.restart_at is not None and now >= child.restart_at:
            self._spawn(child)

    def _on_exit(self, child: ChildState, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        child.process, child.last_exit = None, code
        ran_for = now - child.started_at
        child.backoff_s = self.backoff_initial_s if ran_for >= self.stable_after_s or child.backoff_s == 0 \
            else min(child.backoff_s * 2, self.backoff_max_s)
        child.restart_at = now + child.backoff_s
        child.restarts += 1
        reason = (f"model process exited with code {code} after {ran_for:.1f}s; "
                  f"restart {child.restarts} in {child.backoff_s:.1f}s")
        logger.error("%s: %s", child.model_id, reason)
        server = stand_in_server(child.model.config, child.model.directory, child.socket, reason)
        try:
            server.start()
        except (SocketInUseError, OSError) as exc:
            logger.warning("%s: cannot hold the socket while restarting: %s", child.model_id, exc)
            return
        child.stand_in = server

    def _spawn(self, child: ChildState) -> None:
        if child.stand_in is not None:
            child.stand_in.shutdown(0.0)
            child.stand_in = None
        command = [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(child.model.directory),
                   *self.extra_args]
        if self.socket_dir is not None:
            command += ["--socket-dir", self.socket_dir]
        child.process = subprocess.Popen(command)
        child.started_at = time.monotonic()
        child.restart_at = None
        logger.info("%s: started pid %d (%s)", child.model_id, child.process.pid, child.model.directory)

    def _shutdown(self) -> None:
        for child in self.children:
            if child.running:
                assert child.process is not None
                child.process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for child in self.children:
            if child.process is not None:
                try:
                    child.process.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    logger.warning("%s: did not stop in %.0fs; killing it", child.model_id, STOP_TIMEOUT_S)
                    child.process.kill()
                    child.process.wait()
            if child.stand_in is not None:
                child.stand_in.shutdown(0.0)
                child.stand_in = None
