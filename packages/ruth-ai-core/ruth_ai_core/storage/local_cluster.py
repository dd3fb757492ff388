"""A throwaway PostgreSQL cluster in a temporary directory, for tests, benchmarks and trying things out.

The suite and ``bench/`` run the storage code against a real server, never a
mock: this starts one from the server binaries already on the machine
(``initdb``, ``pg_ctl``; Debian's ``postgresql-15`` package puts them in
/usr/lib/postgresql/15/bin), listening on a Unix socket inside its own
directory (and on 127.0.0.1 only when asked), with trust authentication for
the local user ``postgres``. It can be stopped and started again to play a
database outage. Nothing here is used by a production deployment.

PostgreSQL refuses to run as root: when we are root the cluster's directory
is handed to an unprivileged OS user (``postgres`` by default) and every
server command runs as that user through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Optional

PG_BIN_ENV = "RUTH_AI_PG_BIN"
"""Directory holding initdb and pg_ctl, when they are neither on PATH nor in /usr/lib/postgresql/*/bin."""
SERVER_USER_ENV = "RUTH_AI_PG_USER"
"""OS user that runs the server when we are root (default ``postgres``)."""
DEFAULT_SERVER_USER = "postgres"
DATABASE = "ruth_ai"


class ClusterUnavailable(RuntimeError):
    """No PostgreSQL server binaries here, or no unprivileged user to run them as; the message says which."""


def find_server_binaries() -> Path:
    """The directory with ``initdb``/``pg_ctl``: $RUTH_AI_PG_BIN (only it, when set), else PATH, else the newest
    /usr/lib/postgresql/N/bin."""
    candidates: list[Path] = []
    if os.environ.get(PG_BIN_ENV):
        candidates.append(Path(os.environ[PG_BIN_ENV]))
    else:
        on_path = shutil.which("initdb")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        versions = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: _version_key(Path(p).parent.name),
                          reverse=True)
        candidates.extend(Path(p) for p in versions)
    for directory in candidates:
        if (directory / "initdb").is_file() and (directory / "pg_ctl").is_file() and (directory / "postgres").is_file():
            return directory
    raise ClusterUnavailable(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found on PATH, in /usr/lib/postgresql/*/bin "
        f"or in ${PG_BIN_ENV}; install them, e.g. `apt-get install postgresql-15` on Debian"
    )


def _version_key(name: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in name.split("."))
    except ValueError:
        return (0,)


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalCluster:
    """One PostgreSQL server with one database (``ruth_ai``), removed with its directory by ``destroy``."""

    def __init__(self, tcp: bool = False, durable: bool = False, settings: Optional[dict[str, str]] = None) -> None:
        """``durable=False`` turns fsync off (tests); benchmarks pass True to measure a server as deployed."""
        self.bin = find_server_binaries()
        self.run_as: Optional[str] = None
        if os.geteuid() == 0:
            self.run_as = os.environ.get(SERVER_USER_ENV, DEFAULT_SERVER_USER)
            try:
                pwd.getpwnam(self.run_as)
            except KeyError:
                raise ClusterUnavailable(
                    f"running as root and there is no OS user {self.run_as!r} to run PostgreSQL as "
                    f"(PostgreSQL refuses root); create one or set ${SERVER_USER_ENV}"
                ) from None
            if shutil.which("runuser") is None:
                raise ClusterUnavailable("running as root and `runuser` is missing (util-linux)")
        self.root = Path(tempfile.mkdtemp(prefix="ruth-pg-", dir="/tmp"))
        self.data_dir = self.root / "data"
        self.socket_dir = self.root
        self.log_path = self.root / "server.log"
        self.port = free_tcp_port() if tcp else 5432
        self.tcp = tcp
        self.user = "postgres"
        self._settings = {
            "listen_addresses": "127.0.0.1" if tcp else "",
            "unix_socket_directories": str(self.socket_dir),
            "port": str(self.port),
            "max_connections": "200",
            **({} if durable else {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}),
            **(settings or {}),
        }
        if self.run_as is not None:
            info = pwd.getpwnam(self.run_as)
            os.chown(self.root, info.pw_uid, info.pw_gid)
        os.chmod(self.root, 0o755)  # the socket lives here; other local users (us, when root) connect to it

    # -- lifecycle ----------------------------------------------------------------------

    def _command(self, *args: str) -> list[str]:
        command = [str(self.bin / args[0]), *args[1:]]
        return ["runuser", "-u", self.run_as, "--", *command] if self.run_as else command

    def _run(self, *args: str, timeout: float = 60.0) -> None:
        result = subprocess.run(self._command(*args), capture_output=True, text=True, timeout=timeout, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed ({result.returncode}): {result.stderr.strip() or result.stdout.strip()}"
                               f"\n{self.log_tail()}")

    def init(self) -> "LocalCluster":
        self._run("initdb", "-D", str(self.data_dir), "-U", self.user, "--auth=trust", "--encoding=UTF8",
                  "--no-sync")
        return self

    def start(self, timeout_s: float = 30.0) -> "LocalCluster":
        options = " ".join(f"-c {key}={value!s}" if value else f"-c {key}=''" for key, value in self._settings.items())
        self._run("pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_path), "-o", options, "-w",
                  "-t", str(int(timeout_s)), "start", timeout=timeout_s + 10)
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: disconnect clients, like a database going away under them)."""
        self._run("pg_ctl", "-D", str(self.data_dir), "-m", mode, "-w", "stop")

    @property
    def running(self) -> bool:
        return (self.data_dir / "postmaster.pid").exists()

    def create_database(self, name: str = DATABASE) -> str:
        """Create ``name`` (idempotent) and return its URL."""
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{_plain_name(name)}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        import psycopg

        with psycopg.connect(self.conninfo("postgres"), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{_plain_name(name)}" WITH (FORCE)')

    def destroy(self) -> None:
        """Stop the server if it runs and remove its directory."""
        if self.running:
            try:
                self.stop("immediate")
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "LocalCluster":
        return self.init().start()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    # -- addresses ----------------------------------------------------------------------

    def url(self, database: str = DATABASE) -> str:
        """A plain ``postgresql://`` URL as a user would write it (the Unix socket unless tcp)."""
        if self.tcp:
            return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"
        return f"postgresql://{self.user}@/{database}?host={self.socket_dir}&port={self.port}"

    def conninfo(self, database: str = DATABASE) -> str:
        host = "127.0.0.1" if self.tcp else str(self.socket_dir)
        return f"host={host} port={self.port} user={self.user} dbname={database}"

    # -- observation --------------------------------------------------------------------

    def postmaster_pid(self) -> Optional[int]:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            return None

    def cpu_seconds(self) -> float:
        """User + system CPU of the server: the postmaster, its live children, and the children it reaped."""
        pid = self.postmaster_pid()
        if pid is None:
            return 0.0
        tick = os.sysconf("SC_CLK_TCK")
        total = 0.0
        stat = _proc_stat(pid)
        if stat is not None:
            total += sum(int(stat[i]) for i in (13, 14, 15, 16)) / tick  # utime stime cutime cstime
        for child in _children(pid):
            child_stat = _proc_stat(child)
            if child_stat is not None:
                total += sum(int(child_stat[i]) for i in (13, 14)) / tick
        return total

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def _plain_name(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"database name {name!r}: letters, digits and _ only")
    return name


def _proc_stat(pid: int) -> Optional[list[str]]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces; everything after its closing paren splits cleanly.
    return [str(pid), "comm"] + text[text.rindex(")") + 2:].split()


def _children(pid: int) -> list[int]:
    children: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        stat = _proc_stat(int(entry))
        if stat is not None and int(stat[3]) == pid:
            children.append(int(entry))
    return children


def wait_until_accepting(cluster: LocalCluster, timeout_s: float = 10.0) -> None:
    """Block until the server accepts a connection (after ``start``)."""
    import psycopg

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with psycopg.connect(cluster.conninfo("postgres"), connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
