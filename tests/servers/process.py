"""Process plumbing shared by the private test servers (Dovecot, NSD, slapd, nginx, Exim).

Every server runs in the foreground as a child of the test process, in a session of its own
(``stop_process_group`` reaches everything it forks), with its console output in a log file.
It dies with the test process even on ``kill -9`` (parent-death signal), is stopped at exit if a
test forgets, and a start that fails raises with the server's log. ``ServerProcess`` puts this
together around one temp dir per server; the server modules only say how to configure, run
and probe theirs.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

HOST = "127.0.0.1"
_PR_SET_PDEATHSIG = 1  # linux/prctl.h

# A server that switches uid (Exim) loses its parent-death signal, so it runs as the child of
# this watchdog: the watchdog never changes uid, keeps the signal set before exec and passes
# SIGTERM on.
_WATCHDOG = """
import signal, subprocess, sys
child = subprocess.Popen(sys.argv[1:])
signal.signal(signal.SIGTERM, lambda *_: child.terminate())
sys.exit(child.wait())
"""


def find_binary(names: Sequence[str], candidates: Sequence[str] = ()) -> str | None:
    """The first of ``names`` on PATH, else the first executable ``candidates`` path (sbin isn't on
    an ordinary user's PATH), or None when it isn't installed."""
    found = next(filter(None, map(shutil.which, names)), None)
    return found or next((p for p in candidates if os.access(p, os.X_OK)), None)


def free_ports(count: int, host: str = HOST) -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now."""
    # Hold all sockets until every port is known, so the kernel can't hand out one twice.
    socks = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in socks:
            sock.bind((host, 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def listening_sockets(port: int) -> set[str]:
    """The inodes of the sockets listening on ``port`` now (/proc/net/tcp and tcp6): a socket's own,
    where the port number may be taken again by another test's server the moment it is free."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                found.add(fields[9])
    return found


def port_open(port: int, host: str = HOST) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def log_says(path: Path, text: str) -> bool:
    return path.exists() and text in path.read_text(errors="replace")


def die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the test process dies, even by SIGKILL.

    Without it a killed pytest (CI timeout, kill -9) leaves the servers running forever.
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def launch(argv: Sequence[str], log_path: Path, *, watchdog: bool = False) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session with stdout and stderr in ``log_path``; it dies with us.

    ``watchdog=True`` runs it under ``_WATCHDOG``, for servers that change uid.
    """
    if watchdog:
        argv = [sys.executable, "-c", _WATCHDOG, *argv]
    with log_path.open("wb") as log:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip


def wait_until_ready(
    proc: subprocess.Popen[bytes],
    ready: Callable[[], bool],
    *,
    timeout: float,
    name: str,
    awaited: str,
    log: Callable[[], str],
    error: type[Exception] = RuntimeError,
) -> None:
    """Poll ``ready()``; raise ``error`` with ``log()`` if ``proc`` exits or ``timeout`` passes first.

    The timeout message says what ``name`` still wasn't doing: ``nginx not {awaited} after 15s``.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise error(f"{name} exited with {proc.returncode}:\n{log()}")
        if ready():
            return
        time.sleep(0.02)
    raise error(f"{name} not {awaited} after {timeout}s:\n{log()}")


def stop_process_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group until it exits; SIGKILL the rest after 1 s.

    Signalling only the server's main process can take seconds (Dovecot: 1 s, 6 s right after
    startup): a child still between fork and exec misses the SIGTERM and the master waits for
    it. Re-sending to the group catches it once it has exec'd. The main process stays unreaped
    (WNOWAIT) until the end, so its pid, which is the group id, can't be reused meanwhile.
    """
    if proc.returncode is not None:
        return  # already reaped (it exited by itself): its children follow a dead master
    pgid = proc.pid
    deadline = time.monotonic() + 1.0
    next_term = 0.0
    while time.monotonic() < deadline:
        if time.monotonic() >= next_term:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            next_term = time.monotonic() + 0.1
        if os.waitid(os.P_PID, pgid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.01)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)  # stragglers, or everyone if the main process hung
    proc.wait()


def remove_tree(path: Path) -> None:
    # As a non-root user a chmod-000 folder (Dovecot's mail runs as us) must be opened up first.
    for dirpath, dirnames, _files in os.walk(path):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            if not os.path.islink(sub):
                with contextlib.suppress(OSError):
                    os.chmod(sub, 0o700)
    shutil.rmtree(path, ignore_errors=True)


class ServerProcess:
    """One private server with everything in one temp dir (``root``), started and stopped whole.

    ``start()`` makes ``root`` (``/tmp/<temp_prefix>XXXXXXXX``: unix socket paths are limited to
    108 bytes, pytest's ``tmp_path`` is far too long), lets ``_prepare`` write the config and
    pick ports, launches ``_argv`` (console output in ``root/<console_log>``) and waits for
    ``_ready`` (by default: every port in ``_ports`` answers). Free ports are picked before the
    server binds them and another process may win the race: a start whose error says "Address
    already in use" is retried with new ports, up to ``start_attempts`` times. ``stop()`` stops
    the whole process group and deletes ``root``.
    """

    name: ClassVar[str]  # in messages
    binaries: ClassVar[tuple[str, ...]]  # looked up on PATH
    candidates: ClassVar[tuple[str, ...]] = ()  # then these paths
    error: ClassVar[type[RuntimeError]] = RuntimeError
    temp_prefix: ClassVar[str]
    console_log: ClassVar[str] = "stderr.log"
    log_files: ClassVar[tuple[str, ...]] = ("stderr.log",)  # globs below root, in ``log_text`` order
    start_attempts: ClassVar[int] = 3
    watchdog: ClassVar[bool] = False  # see ``launch``

    def __init__(self, *, binary: str | None = None, start_timeout: float) -> None:
        self.start_timeout = start_timeout
        self.root: Path | None = None
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def find(cls) -> str | None:
        """Path of the server's binary, or None when it isn't installed."""
        return find_binary(cls.binaries, cls.candidates)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_text(self) -> str:
        """Everything the server logged so far (``log_files``)."""
        if self.root is None:
            return ""
        files = (f for pattern in self.log_files for f in sorted(self.root.glob(pattern)))
        return "".join(f.read_text(errors="replace") for f in files)

    def start(self) -> Self:
        if self.running:
            raise self.error("already running")
        binary = self._binary or self.find()
        if binary is None:
            raise self.error(f"{self.name} is not installed: run ./scripts/test to install it")
        for attempt in range(1, self.start_attempts + 1):
            try:
                self.root = Path(tempfile.mkdtemp(prefix=self.temp_prefix, dir="/tmp"))
                self._prepare(binary)
                self._proc = launch(self._argv(binary), self.root / self.console_log, watchdog=self.watchdog)
                atexit.register(self.stop)  # a crashed test run must not leave servers behind
                wait_until_ready(
                    self._proc, self._ready, timeout=self.start_timeout, name=self.name,
                    awaited=self._awaited(), log=self.log_text, error=self.error,
                )  # fmt: skip
                return self
            except self.error as err:
                self.stop()
                if "Address already in use" not in str(err) or attempt == self.start_attempts:
                    raise
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        """Stop the server and every process it started, then delete the temp dir."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            stop_process_group(proc)
        if self.root is not None:
            remove_tree(self.root)
            self.root = None

    @property
    def _dir(self) -> Path:
        if self.root is None:
            raise self.error("not started")
        return self.root

    # -- what each server says --

    def _prepare(self, binary: str) -> None:
        """Write the config below ``root`` and pick the ports."""

    def _argv(self, binary: str) -> list[str]:
        raise NotImplementedError

    def _ports(self) -> list[int]:
        return []

    def _ready(self) -> bool:
        return all(port_open(p) for p in self._ports())

    def _awaited(self) -> str:
        return f"listening on {self._ports()}"
