"""Who may serve a socket path: an exclusive ``flock`` on ``<socket>.lock``.

A second daemon for the same model refuses to start while the first is alive
(the lock is held), a socket file left by a dead daemon is replaced, and a
path that exists and is not a socket is never touched.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import stat
from pathlib import Path

logger = logging.getLogger(__name__)


class SocketInUseError(RuntimeError):
    """Another live daemon owns the socket path."""


def lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def claim(socket_path: Path) -> int:
    """Take the ownership lock and clear a stale socket; raise SocketInUseError if a live daemon holds it."""
    fd = os.open(lock_path(socket_path), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SocketInUseError(f"{socket_path} is served by another live daemon") from None
    try:
        mode = os.lstat(socket_path).st_mode
    except FileNotFoundError:
        return fd
    if not stat.S_ISSOCK(mode):
        _abandon(fd, socket_path)
        raise SocketInUseError(f"{socket_path} exists and is not a socket; refusing to replace it")
    if _answers(socket_path):
        # A live server that does not use the lock (an older runtime): leave it alone.
        _abandon(fd, socket_path)
        raise SocketInUseError(f"{socket_path} is served by another live daemon")
    logger.info("removing stale socket %s left by a dead daemon", socket_path)
    os.unlink(socket_path)
    return fd


def _abandon(fd: int, socket_path: Path) -> None:
    """Give up a lock we hold without serving: remove the lock file we created, then release it."""
    try:
        os.unlink(lock_path(socket_path))
    except FileNotFoundError:
        pass
    os.close(fd)


def _answers(socket_path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(socket_path))
        return True
    except OSError:
        return False
    finally:
        probe.close()
