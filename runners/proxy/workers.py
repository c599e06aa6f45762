"""Several worker processes behind the same listeners, as nginx and Dovecot run theirs (``[proxy] workers``).

The parent binds every listener first (so a port that is taken stops the proxy before anything
runs, and connections wait in the listen queue while a worker starts), makes the table of limits the
workers share (``shared_limits``), then forks the workers before any event loop or thread exists.
Every worker accepts on the same listening sockets and runs the whole proxy in its own loop: the
router, its own poll of the switch marker, its own login journal and session counts in the store.
The store-and-forward spool is one process's (its flock): the port-25 listeners go to worker 0 only.

The parent only supervises: a worker that dies is started again (after a second when it died young,
so a worker that cannot start doesn't spin); SIGTERM or SIGINT to the parent stops every worker and
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

from runners.plan.proxy_model import ProxyOptions
from runners.proxy.contracts import Listener, Service
from runners.proxy.server import Bound, Prebound
from runners.proxy.settings import listeners
from runners.proxy.shared_limits import SharedLoginLimits

log = logging.getLogger(__name__)

#: nginx's listen backlog: a burst of clients waits in the kernel, not refused.
_BACKLOG = 511
#: A worker that ends sooner than this after its start is started again only after ``_RESTART_PAUSE``.
_YOUNG_SECONDS = 2.0
_RESTART_PAUSE = 1.0
#: How long the parent waits for its workers to stop after SIGTERM before it kills them.
_STOP_SECONDS = 15.0
_PR_SET_PDEATHSIG = 1
_SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}


@dataclass(frozen=True, slots=True)
class Worker:
    """What one worker process is given: its number, the sockets it serves, the limits all share."""

    index: int
    prebound: Prebound
    limits: SharedLoginLimits


def worker_count(options: ProxyOptions) -> int:
    """``[proxy] workers``: 0 means one per CPU."""
    return options.workers or os.cpu_count() or 1


def bind_listeners(options: ProxyOptions) -> dict[Listener, list[socket.socket]]:
    """A listening socket per address of every listener. Raises ``OSError`` (nothing stays bound) when
    one can't be bound."""
    bound: dict[Listener, list[socket.socket]] = {}
    try:
        for listener in listeners(options):
            bound[listener] = _bind(listener)
    except BaseException:
        for sockets in bound.values():
            for sock in sockets:
                sock.close()
        raise
    return bound


def _bind(listener: Listener) -> list[socket.socket]:
    infos = socket.getaddrinfo(listener.host or None, listener.port, type=socket.SOCK_STREAM,
                               flags=socket.AI_PASSIVE)  # fmt: skip
    out: list[socket.socket] = []
    port = listener.port
    try:
        for family, kind, proto, _, address in dict.fromkeys(infos):
            sock = socket.socket(family, kind, proto)
            out.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address[0], port, *address[2:]))
            port = port or sock.getsockname()[1]  # port 0: every address of the listener on the one chosen
            sock.listen(_BACKLOG)
            sock.setblocking(False)
    except BaseException:
        for sock in out:
            sock.close()
        raise
    return out


def bound_addresses(prebound: Prebound) -> list[Bound]:
    return [Bound(listener, *sock.getsockname()[:2]) for listener, socks in prebound.items() for sock in socks]


def for_worker(index: int, prebound: Prebound, store_and_forward: bool) -> Prebound:
    """The sockets worker ``index`` serves: all of them, but the port-25 ones (the spool's) only in worker 0."""
    if index == 0 or not store_and_forward:
        return prebound
    return {listener: socks for listener, socks in prebound.items() if listener.service is not Service.SMTP}


class Supervisor:
    """Forks ``count`` workers running ``serve`` and keeps them running until SIGTERM or SIGINT."""

    def __init__(
        self,
        count: int,
        prebound: Prebound,
        limits: SharedLoginLimits,
        serve: Callable[[Worker], int],
        store_and_forward: bool = False,
    ) -> None:
        self.count = count
        self.prebound = prebound
        self.limits = limits
        self.serve = serve
        self.store_and_forward = store_and_forward
        self.pids: dict[int, int] = {}  # pid -> worker index
        self._started_at: dict[int, float] = {}  # worker index -> when it was last started

    def run(self) -> int:
        """Until SIGTERM or SIGINT; 0 then. The signals are blocked here and taken by ``sigtimedwait``,
        so nothing runs in a signal handler."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            for index in range(self.count):
                self._start(index)
            self._supervise()
        finally:
            self._stop_all()
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        return 0

    def _supervise(self) -> None:
        pause_until: dict[int, float] = {}  # worker index -> when it may start again
        while True:
            info = signal.sigtimedwait(_SIGNALS, 0.5)
            if info is not None and info.si_signo in (signal.SIGTERM, signal.SIGINT):
                return
            now = time.monotonic()
            for index in self._reap():
                pause_until[index] = now + (_RESTART_PAUSE if self._young(index, now) else 0.0)
            for index, when in list(pause_until.items()):
                if when <= now:
                    del pause_until[index]
                    self._start(index)

    def _young(self, index: int, now: float) -> bool:
        return now - self._started_at.get(index, 0.0) < _YOUNG_SECONDS

    def _reap(self) -> list[int]:
        """The indexes of the workers that ended (logged with how)."""
        ended = []
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
            log.warning("proxy worker %d (pid %d) ended (%s): starting another", index, pid, _how(status))
            ended.append(index)
        return ended

    def _start(self, index: int) -> None:
        parent = os.getpid()
        pid = os.fork()
        if pid == 0:  # the worker
            code = 1
            try:
                _die_with(parent)
                signal.pthread_sigmask(signal.SIG_SETMASK, set())
                code = self.serve(Worker(index, for_worker(index, self.prebound, self.store_and_forward),
                                         self.limits))  # fmt: skip
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
    options: ProxyOptions,
    prebound: Prebound,
    serve: Callable[[Worker], int],
    count: int | None = None,
) -> int:
    """Run ``count`` (default: ``[proxy] workers``) workers on ``prebound`` until SIGTERM or SIGINT."""
    limits = SharedLoginLimits(options.limits)
    try:
        supervisor = Supervisor(count or worker_count(options), prebound, limits, serve,
                                store_and_forward=options.smtp.store_and_forward)  # fmt: skip
        return supervisor.run()
    finally:
        limits.close()


__all__: Sequence[str] = ("Worker", "bind_listeners", "bound_addresses", "serve_workers", "worker_count")
