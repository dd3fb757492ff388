"""Who may answer on a model socket: the daemon's peer credentials checked against a trust policy.

In a directory every user may write (``/tmp``, the contract's default), another user can bind
``vas_model_<id>.sock`` before the real daemon does and answer with whatever detections it likes.
The socket file's owner proves nothing there, since the squatter owns its own file; what the
kernel does prove is who is on the other end of a connection (``SO_PEERCRED``). So a client
checks that uid, after connecting and before sending anything, against:

- an allow-list, when one is given: the ``daemon_uids`` a caller passes, else ``RUTH_DAEMON_UIDS``
  (comma-separated uids or user names);
- otherwise the users the socket directory itself lets create entries: its owner, and members
  of its group when the group may write it (a group-shared directory such as the compose setup's
  ``/run/ruth-ai``, mode 2770). Membership is the peer's effective group or one of its
  supplementary groups (``SO_PEERGROUPS``, Linux 4.13 and later).

Root and this process's own uid are always trusted: either could already do anything to this
process. CONTRACT.md, "Socket directory", has the recommended setup.
"""

from __future__ import annotations

import os
import pwd
import socket
import stat
import struct
from pathlib import Path
from typing import Iterable, NamedTuple, Optional

DAEMON_UIDS_ENV = "RUTH_DAEMON_UIDS"

_UCRED = struct.Struct("3i")
"""struct ucred: pid, uid, gid (Linux)."""
_SO_PEERGROUPS = getattr(socket, "SO_PEERGROUPS", 59)
"""Linux's option number; Python does not name it."""
_MAX_GROUPS = 256
"""Python caps a getsockopt buffer at 1024 bytes: 256 gids."""


class UntrustedPeer(Exception):
    """The process serving a socket is not one this client trusts; the message says who and what to do."""


class PeerCredentials(NamedTuple):
    pid: int
    uid: int
    gid: int


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """The pid, uid and gid of the process at the other end of a connected AF_UNIX socket."""
    return PeerCredentials(*_UCRED.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)))


def peer_groups(sock: socket.socket) -> frozenset[int]:
    """The peer's supplementary groups; empty when the kernel cannot say (before 4.13, or too many)."""
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, _SO_PEERGROUPS, 4 * _MAX_GROUPS)
    except OSError:
        return frozenset()
    return frozenset(struct.unpack(f"{len(raw) // 4}I", raw[: len(raw) // 4 * 4]))


def user_name(uid: int) -> str:
    """``uid 65534 (nobody)``, or just the number when the user database does not know it (a container's user)."""
    try:
        return f"uid {uid} ({pwd.getpwuid(uid).pw_name})"
    except KeyError:
        return f"uid {uid}"


def parse_uids(text: str) -> frozenset[int]:
    """``"1000, ruth, 10001"`` -> uids; raises ValueError naming an unknown user."""
    uids = set()
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        if item.isdigit():
            uids.add(int(item))
            continue
        try:
            uids.add(pwd.getpwnam(item).pw_uid)
        except KeyError:
            raise ValueError(f"{DAEMON_UIDS_ENV}: no user named {item!r}") from None
    return frozenset(uids)


def allowed_uids(explicit: Optional[Iterable[int]] = None, environ: Optional[dict[str, str]] = None) -> Optional[frozenset[int]]:
    """The allow-list in force: ``explicit``, else $RUTH_DAEMON_UIDS, else None (trust the directory)."""
    if explicit is not None:
        return frozenset(explicit)
    text = (os.environ if environ is None else environ).get(DAEMON_UIDS_ENV, "").strip()
    return parse_uids(text) if text else None


def check_daemon(sock: socket.socket, socket_path: Path, allowed: Optional[frozenset[int]] = None) -> PeerCredentials:
    """Return the peer of ``sock`` (connected to ``socket_path``) if it may serve there; raise UntrustedPeer if not."""
    peer = peer_credentials(sock)
    own = os.geteuid()
    if peer.uid in (0, own):
        return peer
    if allowed is not None:
        if peer.uid in allowed:
            return peer
        trusted = f"{DAEMON_UIDS_ENV} allows {', '.join(user_name(uid) for uid in sorted(allowed)) or 'no one'}"
    else:
        directory = socket_path.parent
        try:
            info = os.stat(directory)
        except OSError as exc:
            raise UntrustedPeer(f"cannot check who may serve {socket_path}: {directory}: {exc.strerror}") from None
        if peer.uid == info.st_uid:
            return peer
        if info.st_mode & stat.S_IWGRP and (peer.gid == info.st_gid or info.st_gid in peer_groups(sock)):
            return peer
        group = f" and members of its group (gid {info.st_gid})" if info.st_mode & stat.S_IWGRP else ""
        trusted = f"{directory} trusts its owner ({user_name(info.st_uid)}){group}"
    raise UntrustedPeer(
        f"refusing {socket_path}: it is served by {user_name(peer.uid)}, pid {peer.pid}, whom this client does not "
        f"trust ({trusted}, besides root and this process's {user_name(own)}). Another user may have bound the socket "
        f"first: serve models from a directory only trusted users can write (CONTRACT.md, \"Socket directory\"), "
        f"or list the daemon's user in {DAEMON_UIDS_ENV}"
    )
