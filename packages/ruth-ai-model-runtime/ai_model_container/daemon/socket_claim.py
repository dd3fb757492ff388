"""Who may serve a socket path: an exclusive ``flock`` on ``<socket>.lock``.

A second daemon for the same model refuses to start while the first is alive
(the lock is held), a socket file left by a dead daemon is replaced, and a
path that exists and is not a socket is never touched.

In a directory other users can write (``/tmp``), one of them may hold the path
first: a socket of their own, or the lock file. The daemon then refuses to start
and says plainly which user holds it and what to do, instead of "in use"; clients
refuse such a squatter on their side (``contract.peer``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import socket
import stat
from pathlib import Path
from typing import Optional

from ai_model_container.contract.peer import PeerCredentials, peer_credentials, user_name

logger = logging.getLogger(__name__)

_ADVICE = ("another user holds this model's socket path; serve from a directory only trusted users can write "
           "(--socket-dir or VAS_MODEL_SOCKET_DIR; CONTRACT.md, \"Socket directory\")")


class SocketInUseError(RuntimeError):
    """Another live daemon, or another user, owns the socket path."""


def lock_path(socket_path: Path) -> Path:
    return socket_path.with_name(socket_path.name + ".lock")


def claim(socket_path: Path) -> int:
    """Take the ownership lock and clear a stale socket; raise SocketInUseError if a live daemon holds it."""
    fd = _open_lock(socket_path)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.fstat(fd).st_uid
        os.close(fd)
        raise SocketInUseError(f"{socket_path} is served by another live daemon{_foreign(owner)}") from None
    try:
        info = os.lstat(socket_path)
    except FileNotFoundError:
        return fd
    if not stat.S_ISSOCK(info.st_mode):
        _abandon(fd, socket_path)
        raise SocketInUseError(f"{socket_path} exists and is not a socket{_foreign(info.st_uid)}; refusing to replace it")
    holder = _answering_peer(socket_path)
    if holder is not None:
        # A live server that does not use the lock (an older runtime, or someone else's process): leave it alone.
        _abandon(fd, socket_path)
        if holder.uid != os.geteuid():
            raise SocketInUseError(f"{socket_path} is held by {user_name(holder.uid)}, pid {holder.pid}, not by this "
                                   f"daemon's {user_name(os.geteuid())}: {_ADVICE}")
        raise SocketInUseError(f"{socket_path} is served by another live daemon (pid {holder.pid})")
    logger.info("removing stale socket %s left by a dead daemon", socket_path)
    try:
        os.unlink(socket_path)
    except PermissionError:
        _abandon(fd, socket_path)
        raise SocketInUseError(f"{socket_path} is a stale socket of {user_name(info.st_uid)} that this daemon's "
                               f"{user_name(os.geteuid())} may not remove: {_ADVICE}") from None
    return fd


def _open_lock(socket_path: Path) -> int:
    """Open (creating) the lock file, never through a symbolic link someone else planted in its place."""
    path = lock_path(socket_path)
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EACCES, errno.EPERM, errno.ELOOP):
            raise
        try:
            owner = os.lstat(path).st_uid
        except OSError:
            raise exc from None
        raise SocketInUseError(f"cannot take the lock {path}: it belongs to {user_name(owner)}: {_ADVICE}") from None


def _foreign(uid: int) -> str:
    """`` (it belongs to uid N (name): ...)`` when ``uid`` is not this process's, else nothing."""
    if uid == os.geteuid():
        return ""
    return f" (it belongs to {user_name(uid)}: {_ADVICE})"


def _abandon(fd: int, socket_path: Path) -> None:
    """Give up a lock we hold without serving: remove the lock file we created, then release it."""
    try:
        os.unlink(lock_path(socket_path))
    except (FileNotFoundError, PermissionError):
        pass
    os.close(fd)


def _answering_peer(socket_path: Path) -> Optional[PeerCredentials]:
    """The credentials of whoever answers on ``socket_path``, or None if nobody does."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(socket_path))
        return peer_credentials(probe)
    except OSError:
        return None
    finally:
        probe.close()
