"""What the fuzzer and the soak watch in a process, from /proc: resident memory (and where it lives),
open descriptors, children.

/proc rather than psutil: nothing to install, and these numbers are all a growth verdict needs.
"""

from __future__ import annotations

import os
from typing import Optional


def rss_kib(pid: int) -> Optional[int]:
    """Resident set size in KiB, or None once the process is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_by_kind(pid: int) -> dict[str, int]:
    """Resident KiB per kind of mapping: ``heap`` (brk), ``anonymous`` (thread arenas, Python's
    arenas, thread stacks), ``stack``, ``shared memory`` and ``files`` (libraries, data files).

    Tells where a growing RSS grows: the Python heap and malloc arenas live in the first two.
    """
    kinds: dict[str, int] = {}
    kind = "anonymous"
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            for line in smaps:
                first = line.split(maxsplit=6)
                if len(first) >= 5 and "-" in first[0] and not first[0].endswith(":"):
                    name = first[5].strip() if len(first) > 5 else ""
                    kind = ("heap" if name == "[heap]" else "stack" if name.startswith("[stack") else
                            "shared memory" if name.startswith(("/dev/shm/", "/memfd:")) else
                            "anonymous" if not name or name.startswith("[") else "files")
                elif line.startswith("Rss:"):
                    kinds[kind] = kinds.get(kind, 0) + int(line.split()[1])
    except OSError:
        return {}
    return kinds


def fd_count(pid: int) -> Optional[int]:
    """Open file descriptors, or None once the process is gone."""
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def socket_count(pid: int) -> Optional[int]:
    """Open sockets among the descriptors, or None once the process is gone."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return None
    count = 0
    for name in names:
        try:
            count += os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:")
        except OSError:
            continue  # closed meanwhile
    return count


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (the model processes of a ``serve-all``)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                parent = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if parent == pid:
            found.append(int(entry))
    return sorted(found)


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""
