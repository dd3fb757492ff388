"""Hosts on one machine: Linux network namespaces on a private bridge, each with its own /dev/shm and sockets.

``Switch`` is a namespace holding a bridge; ``Switch.attach`` makes another
namespace and plugs it into the bridge with a veth pair and an address of its
own, the way hosts sit on one LAN. ``Host`` is the rest of a host: a
placeholder process that lives in the host's network namespace and in a mount
namespace of its own, where fresh tmpfs are mounted on /dev/shm (the frame
rings) and on the model socket directory, so two hosts share neither. Every host
mounts its socket tmpfs on the same path (as every node of a cluster uses
/run/ruth-ai) and its processes get it as $VAS_MODEL_SOCKET_DIR; /tmp itself stays
the machine's, since the virtual environment and the checkout may live there. Every process of the host is started into both namespaces with
``nsenter``; ``Host.kill`` sends SIGKILL to every process in the host's mount
namespace, which is what a host losing power looks like to the others. Once
the last of them is gone the kernel frees that namespace and its mounts, so
nothing is left on the machine.

``entered`` moves the calling thread into a namespace: sockets it opens there
(a database connection, an HTTP request) stay there, and so do processes it
starts.

Needs root and iproute2. Namespace and interface names carry a per-run tag so
a run that crashed does not block the next one.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import IO, Iterator, Optional

from ai_model_container.contract.paths import SOCKET_DIR_ENV

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
PREFIX_LENGTH = 24
"""Every address is in one /24 (``10.77.0.0/24``-style)."""
_libc = ctypes.CDLL(None, use_errno=True)


class NamespacesUnavailable(RuntimeError):
    """Not root, or ``ip netns`` / ``nsenter`` / ``unshare`` missing or refused; the message says which."""


def check_available() -> None:
    """Raise ``NamespacesUnavailable`` unless this process can make network and mount namespaces."""
    if os.geteuid() != 0:
        raise NamespacesUnavailable("needs root (network and mount namespaces)")
    for tool in ("ip", "nsenter", "unshare"):
        if shutil.which(tool) is None:
            raise NamespacesUnavailable(f"`{tool}` is missing (iproute2, util-linux)")
    probe = f"ruthprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except RuntimeError as exc:
        raise NamespacesUnavailable(f"`ip netns add` refused: {exc}") from None
    _ip("netns", "delete", probe)


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """Run the with-block's code in network namespace ``namespace`` (this thread only), then come back."""
    with open("/proc/thread-self/ns/net", "rb") as home, open(NETNS_DIR / namespace, "rb") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())


class Switch:
    """A namespace with a bridge; ``attach`` adds namespaces to it. ``destroy`` removes every one of them."""

    def __init__(self, tag: str, address: str) -> None:
        """``address`` is the switch's own on the bridge (where the operator sits)."""
        self.tag = tag
        self.name = f"{tag}sw"
        self.address = address
        self.namespaces: list[str] = []
        try:
            self._add_namespace(self.name)
            _ip("-n", self.name, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.name, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", "br0")
            _ip("-n", self.name, "link", "set", "br0", "up")
        except BaseException:
            self.destroy()
            raise

    def _add_namespace(self, name: str) -> None:
        _ip("netns", "add", name)
        self.namespaces.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def attach(self, short_name: str, address: str) -> str:
        """A new namespace on the bridge with ``address``; returns its name. Names stay under 15 bytes (IFNAMSIZ)."""
        name = f"{self.tag}{short_name}"
        self._add_namespace(name)
        inside, outside = f"{name}i", f"{name}o"
        _ip("link", "add", inside, "netns", name, "type", "veth", "peer", "name", outside, "netns", self.name)
        _ip("-n", self.name, "link", "set", outside, "master", "br0", "up")
        _ip("-n", name, "addr", "add", f"{address}/{PREFIX_LENGTH}", "dev", inside)
        _ip("-n", name, "link", "set", inside, "up")
        return name

    def destroy(self) -> None:
        """Delete every namespace (their veth ends go with them); carries on past ones already gone."""
        for name in reversed(self.namespaces):
            with contextlib.suppress(RuntimeError):
                _ip("netns", "delete", name)
        self.namespaces.clear()


class Host:
    """Processes that share a network namespace, a private /dev/shm and a private socket directory, as on a host of their own.

    ``socket_dir`` must exist and be empty: the host mounts its own tmpfs over it, so the path is the same on
    every host and what is in it is not.
    """

    def __init__(self, name: str, namespace: str, log_dir: Path, socket_dir: Path, startup_timeout_s: float = 10.0) -> None:
        self.name = name
        self.namespace = namespace
        self.log_dir = log_dir
        self.socket_dir = socket_dir
        self.processes: list[subprocess.Popen] = []
        self.mount_namespace = ""
        # unshare execs sh, which mounts and then execs sleep: the placeholder's pid is the one Popen has.
        self._placeholder = subprocess.Popen(
            ["nsenter", f"--net={NETNS_DIR / namespace}", "unshare", "--mount", "--propagation", "private",
             "sh", "-c", 'mount -t tmpfs -o size=64m tmpfs /dev/shm && mount -t tmpfs -o size=16m tmpfs "$1" '
             '&& exec sleep infinity', "host", str(socket_dir)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + startup_timeout_s
        while self._comm() != "sleep":
            if self._placeholder.poll() is not None or time.monotonic() > deadline:
                error = self._placeholder.stderr.read().decode(errors="replace") if self._placeholder.stderr else ""
                self.kill()
                raise NamespacesUnavailable(f"host {name}: private /dev/shm and socket directory not set up: {error.strip()}")
            time.sleep(0.01)
        self.mount_namespace = os.readlink(f"/proc/{self._placeholder.pid}/ns/mnt")

    def _comm(self) -> str:
        try:
            return Path(f"/proc/{self._placeholder.pid}/comm").read_text().strip()
        except OSError:
            return ""

    def start(self, label: str, command: list[str], env: Optional[dict[str, str]] = None) -> subprocess.Popen:
        """Start ``command`` on this host, with the host's socket directory; its output goes to ``<log_dir>/<host>-<label>.log``."""
        log_path = self.log_dir / f"{self.name}-{label}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(["nsenter", f"--target={self._placeholder.pid}", "--mount", "--net", "--", *command],
                                       stdout=log, stderr=subprocess.STDOUT,
                                       env={**(os.environ if env is None else env), SOCKET_DIR_ENV: str(self.socket_dir)})
        self.processes.append(process)
        return process

    def run(self, command: list[str], timeout_s: float = 10.0) -> subprocess.CompletedProcess:
        """Run ``command`` on this host to completion (a look at its /dev/shm, say)."""
        return subprocess.run(["nsenter", f"--target={self._placeholder.pid}", "--mount", "--net", "--", *command],
                              capture_output=True, text=True, timeout=timeout_s)

    def log(self, label: str) -> str:
        try:
            return (self.log_dir / f"{self.name}-{label}.log").read_text(errors="replace")
        except OSError:
            return ""

    @staticmethod
    def stop(process: subprocess.Popen, timeout_s: float = 15.0) -> None:
        """SIGTERM one process of the host and wait for it (SIGKILL after ``timeout_s``)."""
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def pids(self) -> list[int]:
        """Every process in this host's mount namespace now, whoever started it."""
        found: list[int] = []
        if not self.mount_namespace:
            return found
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{entry}/ns/mnt") == self.mount_namespace:
                        found.append(int(entry))
        return found

    def kill(self) -> None:
        """SIGKILL every process of the host at once, as a host losing power; wait for the ones we started."""
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._placeholder.kill()
        for process in [self._placeholder, *self.processes]:
            process.wait()
        stream: Optional[IO[bytes]] = self._placeholder.stderr
        if stream is not None:
            stream.close()
