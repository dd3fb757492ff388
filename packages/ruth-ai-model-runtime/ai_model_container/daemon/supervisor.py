"""``ruth-model serve-all``: host every valid model under a models root, one process per model.

Each model runs as its own ``ruth-model serve`` child, so a crash in one
model's code or native libraries cannot take another down. When a child dies
the supervisor restarts it with exponential backoff (reset once a child has
stayed up for ``stable_after_s``). Requests are never retried or replayed:
what was in flight in the dead process is lost, by design.

The supervisor owns each model's socket for its whole life (the claim, the
path and the listening socket) and hands the listening socket to the child
(``--listen-fd``), the way socket activation does. So the path never
disappears: while a child is loading or down, a stand-in on the same
listening socket answers health as DEGRADED with the reason ("model is
loading", "exited with code -9, restart 3 in 4.0 s") and refuses inference
with MODEL_NOT_READY; when the child reports that it accepts (``--ready-fd``),
the stand-in stops. Clients never see the socket missing, only the model's
state.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from ai_model_container.contract.paths import socket_path
from ai_model_container.daemon.container import READY_MESSAGE
from ai_model_container.daemon.discovery import DiscoveredModel
from ai_model_container.daemon.server import IPCServer, bind_listener, release_socket
from ai_model_container.daemon.socket_claim import claim
from ai_model_container.daemon.stand_in import stand_in_server

logger = logging.getLogger(__name__)

DEFAULT_BACKOFF_INITIAL_S = 1.0
DEFAULT_BACKOFF_MAX_S = 30.0
DEFAULT_STABLE_AFTER_S = 30.0
STOP_TIMEOUT_S = 15.0
POLL_INTERVAL_S = 0.1


@dataclass
class ChildState:
    model: DiscoveredModel
    socket: Path
    listener: socket.socket
    lock_file: int
    process: Optional[subprocess.Popen] = None
    ready_pipe: Optional[int] = None
    """Read end of the pipe the child writes READY_MESSAGE to once it accepts connections."""
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
        self.models = models
        self.children: list[ChildState] = []
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Claim every model's socket, start every model, keep them running until ``stop``, then stop them all.

        A model whose socket cannot be claimed (another live daemon serves it) is reported and skipped.
        """
        try:
            for model in self.models:
                child = self._claim(model)
                if child is not None:
                    self.children.append(child)
                    self._show_stand_in(child, "model is loading")
                    self._spawn(child)
            if not self.children:
                logger.error("no model could be served")
                return
            while not self._stop.wait(POLL_INTERVAL_S):
                for child in self.children:
                    self._tend(child, time.monotonic())
        finally:
            self._shutdown()

    def _claim(self, model: DiscoveredModel) -> Optional[ChildState]:
        path = socket_path(model.config.model_id, self.socket_dir)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            lock_file = claim(path)
        except (OSError, RuntimeError) as exc:
            logger.error("%s: cannot serve %s: %s", model.config.model_id, path, exc)
            return None
        try:
            listener = bind_listener(path)
        except OSError as exc:
            release_socket(path, lock_file)
            logger.error("%s: cannot listen on %s: %s", model.config.model_id, path, exc)
            return None
        return ChildState(model, path, listener, lock_file)

    def _tend(self, child: ChildState, now: float) -> None:
        if self._stop.is_set():
            return  # a Ctrl-C reaches the children too: their exits are not crashes
        if child.ready_pipe is not None and _readable(child.ready_pipe):
            self._on_ready(child)
        if child.process is not None and child.process.poll() is not None:
            self._on_exit(child, now)
        if child.restart_at is not None and now >= child.restart_at:
            self._spawn(child)

    def _on_ready(self, child: ChildState) -> None:
        assert child.ready_pipe is not None
        message = os.read(child.ready_pipe, len(READY_MESSAGE))
        os.close(child.ready_pipe)
        child.ready_pipe = None
        if message == READY_MESSAGE:
            self._hide_stand_in(child)
            logger.info("%s: serving (pid %d)", child.model_id, child.process.pid if child.process else -1)

    def _on_exit(self, child: ChildState, now: float) -> None:
        assert child.process is not None
        code = child.process.returncode
        child.process, child.last_exit = None, code
        if child.ready_pipe is not None:
            os.close(child.ready_pipe)
            child.ready_pipe = None
        ran_for = now - child.started_at
        child.backoff_s = self.backoff_initial_s if ran_for >= self.stable_after_s or child.backoff_s == 0 \
            else min(child.backoff_s * 2, self.backoff_max_s)
        child.restart_at = now + child.backoff_s
        child.restarts += 1
        reason = (f"model process exited with code {code} after {ran_for:.1f}s; "
                  f"restart {child.restarts} in {child.backoff_s:.1f}s")
        logger.error("%s: %s", child.model_id, reason)
        self._show_stand_in(child, reason)

    def _show_stand_in(self, child: ChildState, reason: str) -> None:
        """Answer for the model on its socket: a fresh stand-in with this reason."""
        self._hide_stand_in(child)
        server = stand_in_server(child.model.config, child.socket, reason, listener=child.listener.dup())
        server.start()
        child.stand_in = server

    def _hide_stand_in(self, child: ChildState) -> None:
        if child.stand_in is not None:
            child.stand_in.shutdown(0.0)
            child.stand_in = None

    def _spawn(self, child: ChildState) -> None:
        ready_read, ready_write = os.pipe()
        listen_fd = child.listener.fileno()
        command = [sys.executable, "-m", "ai_model_container.daemon.cli", "serve", str(child.model.directory),
                   "--listen-fd", str(listen_fd), "--ready-fd", str(ready_write), *self.extra_args]
        if self.socket_dir is not None:
            command += ["--socket-dir", self.socket_dir]
        try:
            child.process = subprocess.Popen(command, pass_fds=(listen_fd, ready_write))
        finally:
            os.close(ready_write)
        child.ready_pipe = ready_read
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
            self._hide_stand_in(child)
            if child.ready_pipe is not None:
                os.close(child.ready_pipe)
                child.ready_pipe = None
            child.listener.close()
            release_socket(child.socket, child.lock_file)
        self.children.clear()


def _readable(fd: int) -> bool:
    return bool(select.select([fd], [], [], 0)[0])
