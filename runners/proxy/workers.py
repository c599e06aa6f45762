"""Several worker processes behind the same listeners, as nginx and Dovecot run theirs (``[proxy] workers``).

The parent binds every listener first (so a port that is taken stops the proxy before anything
runs, and connections wait in the listen queue while a worker starts), makes the table of limits the
workers share (``shared_limits``), then forks the workers before any event loop or thread exists.
Every worker accepts on its own sockets of every listener (``SO_REUSEPORT``) and runs the whole proxy
in its own loop: the router, its own poll of the switch marker, its own login journal and session
counts in the store. The store-and-forward spool is one process's (its flock): the port-25 listeners
go to worker 0 only.

The parent only supervises: a worker that dies is started again (after a second when it died young,
so a worker that cannot start doesn't spin), but one that says it can't run at all (exit 2: its
spool is another proxy's) stops the proxy with exit 2; SIGTERM or SIGINT to the parent stops every worker and
waits for them; a worker whose parent dies, even by SIGKILL, is sent SIGTERM by the kernel
(``PR_SET_PDEATHSIG``) and stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from runners.plan.proxy_model import ProxyOptions
from runners.proxy.contracts import LISTEN_BACKLOG, Listener, Service
from runners.proxy.server import Bound, Prebound
from runners.proxy.settings import listeners
from runners.proxy.shared_limits import SharedLoginLimits

log = logging.getLogger(__name__)

#: A worker that ends sooner than this after its start is started again only after ``_RESTART_PAUSE``.
_YOUNG_SECONDS = 2.0
_RESTART_PAUSE = 1.0
#: How long the parent waits for its workers to stop after SIGTERM before it kills them.
_STOP_SECONDS = 15.0
_PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
#: A worker that exits with this code can't run at all (its spool is another proxy's, say): starting
#: another would fail the same way, so the parent stops every worker and exits with it.
EXIT_UNUSABLE = 2


@dataclass(frozen=True, slots=True)
class Worker:
    """What one worker process is given: its number, the sockets it serves, the limits all share."""

    index: int
    prebound: Prebound
    limits: SharedLoginLimits


def worker_count(options: ProxyOptions) -> int:
    """``[proxy] workers``: 0 means one per CPU."""
    return options.workers or os.cpu_count() or 1


def bind_listeners(options: ProxyOptions, workers: int) -> list[Prebound]:
    """Per worker, the listening sockets it serves. Each worker has a socket of its own per address
    (``SO_REUSEPORT``: the kernel spreads the connections, and no worker wakes for another's); the
    port-25 listeners of a store-and-forward proxy get one socket, worker 0's. The parent keeps every
    socket open, so connections for a worker that died wait in its queue for the next one. Raises
    ``OSError`` (nothing stays bound) when an address is taken."""
    per_worker: list[dict[Listener, list[socket.socket]]] = [{} for _ in range(workers)]
    spool_is_one = options.smtp.store_and_forward
    try:
        for listener in listeners(options):
            copies = 1 if spool_is_one and listener.service is Service.SMTP else workers
            for family, kind, proto, _, address in _addresses(listener):
                port = _claim(family, kind, proto, address, listener.port)
                for index in range(copies):
                    sock = _listening(family, kind, proto, address, port)
                    per_worker[index].setdefault(listener, []).append(sock)
    except BaseException:
        close_all(per_worker)
        raise
    return list(per_worker)


def close_all(per_worker: Sequence[Prebound]) -> None:
    for prebound in per_worker:
        for socks in prebound.values():
            for sock in socks:
                sock.close()


_Address = tuple[Any, ...]


def _addresses(
    listener: Listener,
) -> list[tuple[socket.AddressFamily, socket.SocketKind, int, str, _Address]]:
    infos = socket.getaddrinfo(listener.host or None, listener.port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)  # fmt: skip
    return list(dict.fromkeys(infos))


def _claim(
    family: socket.AddressFamily, kind: socket.SocketKind, proto: int, address: _Address, port: int
) -> int:
    """The port, checked free: SO_REUSEPORT would let us share a port another proxy listens on, so a
    plain bind first (``OSError`` when taken); with port 0 it is also what chooses the port."""
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        probe.bind((address[0], port, *address[2:]))
        return int(probe.getsockname()[1])


def _listening(
    family: socket.AddressFamily, kind: socket.SocketKind, proto: int, address: _Address, port: int
) -> socket.socket:
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address[0], port, *address[2:]))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


def bound_addresses(prebound: Prebound) -> list[Bound]:
    return [Bound.of(listener, sock) for listener, socks in prebound.items() for sock in socks]


class Supervisor:
    """Forks a worker per entry of ``per_worker`` running ``serve`` and keeps them running until SIGTERM or SIGINT."""

    def __init__(
        self,
        per_worker: Sequence[Prebound],
        limits: SharedLoginLimits,
        serve: Callable[[Worker], int],
    ) -> None:
        self.count = len(per_worker)
        self.per_worker = per_worker
        self.limits = limits
        self.serve = serve
        self.pids: dict[int, int] = {}  # pid -> worker index
        self._started_at: dict[int, float] = {}  # worker index -> when it was last started

    def run(self) -> int:
        """Until SIGTERM or SIGINT (0), or a worker that can't run (``EXIT_UNUSABLE``). The signals are
        blocked here and taken by ``sigtimedwait``, so nothing runs in a signal handler."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for index in range(self.count):
                self._start(index)
            return self._supervise()
        finally:
            self._stop_all()
            signal.pthread_sigmask(signal.SIG_SETMASK, old)

    def _supervise(self) -> int:
        pause_until: dict[int, float] = {}  # worker index -> when it may start again
        while True:
            info = signal.sigtimedwait(_SIGNALS, 0.5)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return 0
            now = time.monotonic()
            ended = self._reap()
            if EXIT_UNUSABLE in ended.values():
                return EXIT_UNUSABLE
            for index in ended:
                pause_until[index] = now + (_RESTART_PAUSE if self._young(index, now) else 0.0)
            for index, when in list(pause_until.items()):
                if when <= now:
                    del pause_until[index]
                    self._start(index)

    def _young(self, index: int, now: float) -> bool:
        return now - self._started_at.get(index, 0.0) < _YOUNG_SECONDS

    def _reap(self) -> dict[int, int | None]:
        """The workers that ended: index -> exit code (None: killed by a signal); logged with how."""
        ended: dict[int, int | None] = {}
        while self.pids:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self.pids.pop(pid, None)
            if index is None:
                continue
            log.warning("proxy worker %d (pid %d) ended (%s)", index, pid, _how(status))
            ended[index] = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
        return ended

    def _start(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with(parent)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                code = self.serve(Worker(index, self.per_worker[index], self.limits))
            except BaseException:
                log.exception("proxy worker %d failed", index)
            finally:
                os._exit(code)
        self.pids[pid] = index
        self._started_at[index] = time.monotonic()

    def _stop_all(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_SECONDS
        while self.pids and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.pids.clear()
                break
            if pid == 0:
                time.sleep(0.05)
            else:
                self.pids.pop(pid, None)
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in list(self.pids):
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids.clear()


def _die_with(parent: int) -> None:
    """SIGTERM to this process when its parent dies; if it died already, now."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def _how(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit {os.waitstatus_to_exitcode(status)}"


def serve_workers(
    options: ProxyOptions, per_worker: Sequence[Prebound], serve: Callable[[Worker], int]
) -> int:
    """A worker per entry of ``per_worker`` (``bind_listeners``), until SIGTERM or SIGINT."""
    limits = SharedLoginLimits(options.limits)
    try:
        return Supervisor(per_worker, limits, serve).run()
    finally:
        limits.close()
