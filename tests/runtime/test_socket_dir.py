"""A socket directory the daemon cannot create or write: exit 2 with one line that says what to run.

The usual case is a bind mount Docker created as root 0755 for a daemon that runs
as uid 10001. Root writes everywhere, so when the suite runs as root the daemon
runs as an unprivileged uid; when it runs as a normal user, a directory of that
user with mode 0555 does the same. The daemon runs in a forked child that drops
to that uid and calls the real command line (``ruth-model serve``, ``ruth-serve``),
because the interpreter may live where other users cannot execute it (a
pyenv under /root).
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional

import pytest

from ai_model_container.daemon.cli import main as ruth_model
from ai_model_container.daemon.entrypoint import run as ruth_serve
from ruth_model_tools.example_container import EXAMPLE_MODEL_DIR

UNPRIVILEGED = 20001  # when the suite runs as root: a uid and gid with no rights on the test directories


@dataclass(frozen=True)
class Identity:
    uid: int
    gid: int
    switch: bool  # fork, then setuid to it (the suite runs as root)


@dataclass(frozen=True)
class Result:
    code: int
    output: str

    @property
    def lines(self) -> list[str]:
        return [line for line in self.output.splitlines() if line.strip()]


@pytest.fixture
def identity() -> Identity:
    if os.geteuid() == 0:
        return Identity(UNPRIVILEGED, UNPRIVILEGED, switch=True)
    return Identity(os.geteuid(), os.getegid(), switch=False)


@pytest.fixture
def locked_dir(identity: Identity) -> Iterator[Path]:
    """A directory the daemon can enter but not write: root's 0755 (as Docker makes it), or the user's own 0555."""
    directory = Path(tempfile.mkdtemp(prefix="ruth-locked-", dir="/tmp"))
    directory.chmod(0o755 if identity.switch else 0o555)
    yield directory
    directory.chmod(0o755)
    shutil.rmtree(directory, ignore_errors=True)


def run_as(identity: Identity, command: Callable[..., None], arguments: list[str],
           env: Optional[dict[str, str]] = None) -> Result:
    """Run a click command line in a forked child as ``identity``; its exit status and everything it printed."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 98
        try:
            os.close(read_end)
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            sys.stdout = sys.stderr = open(2, "w", closefd=False)
            logging.root.handlers.clear()  # pytest's capture handlers; the daemon configures its own
            os.environ.update(env or {})
            if identity.switch:
                os.setgroups([])
                os.setgid(identity.gid)
                os.setuid(identity.uid)
            command(arguments)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, errors="replace") as pipe:
        output = pipe.read()
    return Result(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), output)


def serve(identity: Identity, socket_dir: Path) -> Result:
    return run_as(identity, ruth_model, ["serve", str(EXAMPLE_MODEL_DIR), "--socket-dir", str(socket_dir)])


def owner_and_mode(path: Path) -> str:
    status = path.stat()
    return f"owned by {status.st_uid}:{status.st_gid} with mode {status.st_mode & 0o7777:04o}"


def assert_one_clear_line(result: Result) -> str:
    assert result.code == 2, result.output
    assert "Traceback" not in result.output, result.output
    (line,) = result.lines
    assert "cannot start: " in line
    return line


def test_an_unwritable_socket_directory_names_owner_mode_ids_and_the_fix(identity: Identity, locked_dir: Path) -> None:
    line = assert_one_clear_line(serve(identity, locked_dir))
    assert f"socket directory {locked_dir} is not writable" in line
    assert owner_and_mode(locked_dir) in line
    assert f"uid {identity.uid}, gid {identity.gid}" in line
    assert f"install -d -m 2770 -g {identity.gid} {locked_dir}" in line
    assert "docker run --user UID:GID" in line
    assert list(locked_dir.iterdir()) == [], "nothing is created in it"


def test_a_socket_directory_that_cannot_be_created_names_its_parent(identity: Identity, locked_dir: Path) -> None:
    missing = locked_dir / "sockets"
    line = assert_one_clear_line(serve(identity, missing))
    assert f"cannot create socket directory {missing}: Permission denied" in line
    assert f"{locked_dir} is {owner_and_mode(locked_dir)}" in line
    assert f"uid {identity.uid}, gid {identity.gid}" in line
    assert f"install -d -m 2770 -g {identity.gid} {missing}" in line
    assert not missing.exists()


def test_ruth_serve_the_image_entry_point_says_the_same(identity: Identity, locked_dir: Path) -> None:
    result = run_as(identity, ruth_serve, [], env={"MODEL_DIR": str(EXAMPLE_MODEL_DIR),
                                                   "VAS_MODEL_SOCKET_DIR": str(locked_dir)})
    line = assert_one_clear_line(result)
    assert f"socket directory {locked_dir} is not writable" in line
    assert f"install -d -m 2770 -g {identity.gid} {locked_dir}" in line


@pytest.mark.parametrize("below", [False, True], ids=["the-path", "a-parent"])
def test_a_file_in_the_way_of_the_socket_directory(tmp_path: Path, below: bool) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("someone's file")
    socket_dir = blocker / "sockets" if below else blocker
    own = Identity(os.geteuid(), os.getegid(), switch=False)
    line = assert_one_clear_line(serve(own, socket_dir))
    assert f"socket directory {socket_dir}: it or one of its parents exists and is not a directory" in line
    assert blocker.read_text() == "someone's file"


def test_a_socket_path_the_kernel_refuses_is_one_line_too() -> None:
    """Past the AF_UNIX limit (107 bytes) the directory is fine but bind() fails: still no traceback."""
    directory = Path(tempfile.mkdtemp(prefix="ruth-" + "x" * 100, dir="/tmp"))
    try:
        own = Identity(os.geteuid(), os.getegid(), switch=False)
        line = assert_one_clear_line(serve(own, directory))
        assert f"cannot open socket {directory}/vas_model_example.sock" in line and "too long" in line
        assert list(directory.iterdir()) == [], "the lock file is released with the socket"
    finally:
        shutil.rmtree(directory, ignore_errors=True)
