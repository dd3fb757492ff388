"""The model daemon's lifecycle: load, warm up, serve, report READY, drain on a signal.

Startup (CONTRACT.md, "Health states"): read model.yaml, verify the weights, pick the device,
load the model (once), warm it up, then open the socket and report READY, both
as a log line and through the health op. A model that cannot load is a
configuration error and the daemon exits non-zero with the reason; a missing
GPU is not (the daemon starts DEGRADED, see device.py).

Before loading anything the daemon makes sure it can create its socket: a socket
directory it cannot create or write is a configuration error whose message names
the directory, its owner and mode, the ids the daemon runs as, and the command
that fixes it (a bind mount Docker created as root 0755 is the usual case).

SIGTERM and SIGINT stop accepting, let requests in flight finish within the
drain deadline, remove the socket and exit 0.
"""

from __future__ import annotations

import gc
import importlib
import logging
import os
import signal
import socket
import stat
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Optional

from ai_model_container.contract.model_config import MODEL_FILE, ModelConfig, load_model_config, verify_weights
from ai_model_container.contract.paths import socket_path
from ai_model_container.contract.schema import is_identifier
from ai_model_container.daemon.server import IPCServer
from ai_model_container.daemon.service import ModelService
from ai_model_container.device import Device, select_device
from ai_model_container.handler import InferenceHandler

logger = logging.getLogger(__name__)

DEFAULT_DRAIN_TIMEOUT_S = 10.0
READY_MESSAGE = b"ready\n"
"""What a daemon started by ``serve-all`` writes to its ready pipe once it accepts connections."""


class StartupError(RuntimeError):
    """The daemon cannot serve this model; the message says why."""


class SocketDirError(StartupError):
    """The socket directory cannot be created or written by this process; the message says how to fix it."""


def _identity() -> str:
    groups = ",".join(str(gid) for gid in sorted(set(os.getgroups()) | {os.getegid()}))
    return f"uid {os.geteuid()}, gid {os.getegid()}, groups {groups}"


def _owner_and_mode(path: Path) -> str:
    status = path.stat()
    return f"owned by {status.st_uid}:{status.st_gid} with mode {stat.S_IMODE(status.st_mode):04o}"


def _writable(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK, effective_ids=os.access in os.supports_effective_ids)


def check_socket_dir(directory: Path) -> None:
    """Create ``directory`` if it is missing and make sure this process can create its socket there.

    Raises SocketDirError with one line: what is wrong, who owns the directory with which mode,
    the uid and gids the daemon runs as, and the command that fixes it.
    """
    gid = os.getegid()
    give = (f"install -d -m 2770 -g {gid} {directory} (as root; for a container, on the host directory "
            f"mounted at {directory})")
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise SocketDirError(f"socket directory {directory}: it or one of its parents exists and is not a "
                             f"directory; remove that file or choose another socket directory") from None
    except OSError as exc:
        parent = next(path for path in directory.parents if path.exists())
        raise SocketDirError(
            f"cannot create socket directory {directory}: {exc.strerror}; {parent} is {_owner_and_mode(parent)} "
            f"and the daemon runs as {_identity()}. Create it for the daemon's group: {give}, or pass "
            f"--socket-dir (or set VAS_MODEL_SOCKET_DIR) to a directory it can write"
        ) from None
    if _writable(directory):
        return
    if os.statvfs(directory).f_flag & os.ST_RDONLY:
        raise SocketDirError(f"socket directory {directory} is on a read-only mount; mount it read-write "
                             f"(docker run -v HOST_DIR:{directory}, without :ro)")
    raise SocketDirError(
        f"socket directory {directory} is not writable by this daemon: it is {_owner_and_mode(directory)} "
        f"and the daemon runs as {_identity()}. Give it to the daemon's group: {give}, or run the daemon "
        f"as a user who can write it (docker run --user UID:GID)"
    )


def load_handler(config: ModelConfig, model_dir: Path, device: Device) -> InferenceHandler:
    """Import the entry point ``module:Class`` from the model directory and instantiate it."""
    module_name, class_name = config.entry_point.split(":")
    directory = str(model_dir.resolve())
    if directory not in sys.path:
        sys.path.insert(0, directory)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise StartupError(f"{config.model_id}: cannot import {module_name!r} from {model_dir}: {exc}") from exc
    handler_class = getattr(module, class_name, None)
    if not (isinstance(handler_class, type) and issubclass(handler_class, InferenceHandler)):
        raise StartupError(f"{config.model_id}: {config.entry_point} is not an InferenceHandler subclass")
    return handler_class(config, model_dir, device)


class ModelDaemon:
    def __init__(self, model_dir: Path, socket_dir: Optional[str] = None, model_id: Optional[str] = None,
                 drain_timeout_s: float = DEFAULT_DRAIN_TIMEOUT_S, listen_fd: Optional[int] = None,
                 ready_fd: Optional[int] = None) -> None:
        """``listen_fd``: serve a listening socket handed over by ``serve-all`` instead of binding the path;
        ``ready_fd``: a pipe to write ``ready`` to once connections are accepted (then closed)."""
        self.model_dir = model_dir
        self.socket_dir = socket_dir
        self.model_id_override = model_id
        self.drain_timeout_s = drain_timeout_s
        self.listen_fd = listen_fd
        self.ready_fd = ready_fd
        self.server: Optional[IPCServer] = None
        self.handler: Optional[InferenceHandler] = None
        self._stop = threading.Event()

    def start(self) -> IPCServer:
        """Load and warm up the model, then start serving; raises StartupError or the config errors."""
        config = load_model_config(self.model_dir / MODEL_FILE)
        if self.model_id_override:
            if not is_identifier(self.model_id_override):
                raise StartupError(f"model id {self.model_id_override!r} is not [A-Za-z0-9_-]{{1,64}}")
            config = ModelConfig.model_validate({**config.model_dump(), "model_id": self.model_id_override})
        path = socket_path(config.model_id, self.socket_dir)
        check_socket_dir(path.parent)  # before the weights load: a wrong mount fails in a second
        verify_weights(config, self.model_dir)
        try:
            device = select_device(config.resources)
        except ValueError as exc:  # a bad RUTH_DEVICE is a configuration error, not a crash
            raise StartupError(f"{config.model_id}: {exc}") from None
        handler = load_handler(config, self.model_dir, device)
        if device.degraded_reason:
            logger.warning("%s starts DEGRADED: %s", config.model_id, device.degraded_reason)
        else:
            try:
                handler.load()
                handler.warmup()
            except Exception as exc:
                raise StartupError(f"{config.model_id}: loading the model failed: {type(exc).__name__}: {exc}") from exc
        self.handler = handler
        # The model, the runtime and their libraries live as long as the process: keep them out of the
        # collector's scans, whose pauses would stop every request at once.
        gc.freeze()
        service = ModelService(config, handler, device)
        listener = socket.socket(fileno=self.listen_fd) if self.listen_fd is not None else None
        server = IPCServer(path, service, listener=listener)
        try:
            server.start()
        except BaseException as exc:
            handler.close()
            if isinstance(exc, OSError):  # e.g. a path longer than AF_UNIX allows, a lock file of another user
                raise StartupError(f"{config.model_id}: cannot open socket {path}: {exc}") from exc
            raise
        self.server = server
        if self.ready_fd is not None:
            os.write(self.ready_fd, READY_MESSAGE)
            os.close(self.ready_fd)
        logger.info("%s model_id=%s version=%s device=%s socket=%s", service.status.value, config.model_id,
                    config.model_version, device, server.socket_path)
        return server

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> None:
        """Start, serve until SIGTERM or SIGINT, then shut down cleanly."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            server = self.start()
            self._stop.wait()
            logger.info("draining %s (deadline %.1fs)", server.socket_path, self.drain_timeout_s)
            server.shutdown(self.drain_timeout_s)
            if self.handler is not None:
                self.handler.close()
            logger.info("stopped")
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: Optional[FrameType]) -> None:
        logger.info("received %s", signal.Signals(signum).name)
        self._stop.set()
