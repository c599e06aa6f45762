"""``cutover proxy`` with several worker processes (``[proxy] workers``), run as the operator runs it,
in front of two real Dovecots: the limits before login hold for the whole proxy and not once per
worker; a switch ends the moved sessions on every worker and ``status`` sums the sessions of all;
a worker that dies is replaced; SIGTERM to the parent stops them all; a parent killed by SIGKILL
leaves no worker serving; the port-25 listener and its spool are one worker's, and a worker that
can't run at all (its spool held by another proxy) stops the proxy."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import DovecotFactory
from dovecot_lab import CUTOVER
from proxy_harness import QUICK_FAILURES, USERS, eventually, switch_wave, write_proxy_plan
from servers.dovecot import DovecotServer
from servers.process import free_ports, listening_sockets
from test_proxy_backlog import connected_within

from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.proxy.spool import Spool
from runners.proxy.workers import bind_listeners, close_all
from runners.state.store import StateStore

WORKERS = 3
#: Per-worker limits would let several times these through: 3 workers x 3 connections.
LIMITS = """max_unauthenticated_per_address = 3
lockout_failures = 2
lockout_seconds = 600
backend_connect_seconds = 10
"""
BUSY = b"* BYE [UNAVAILABLE] Too many connections from your address.\r\n"
LOCKED = b"NO [UNAVAILABLE] Too many failed logins; try again later.\r\n"
MOVED = b"* BYE [UNAVAILABLE] Your mailbox moved to another server; please reconnect.\r\n"


class Raw:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=20)
        self.file = self.sock.makefile("rb")
        self.greeting = self.line()

    def line(self) -> bytes:
        return self.file.readline()

    def command(self, tag: bytes, text: bytes) -> bytes:
        """Send a command; its tagged answer (untagged lines skipped)."""
        self.sock.sendall(tag + b" " + text + b"\r\n")
        while (line := self.line()) and not line.startswith(tag + b" "):
            pass
        return line

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@dataclass
class Running:
    proc: subprocess.Popen[str]
    port: int
    plan: Plan

    def workers(self) -> set[int]:
        return children_of(self.proc.pid)


def children_of(parent: int) -> set[int]:
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[1]) == parent and fields[0] != "Z":
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # a zombie serves nothing


@contextlib.contextmanager
def running_proxy(tmp_path: Path, dovecot_factory: DovecotFactory, **env: str) -> Iterator[Running]:
    legacy: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    target: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    plan_path, ports = write_proxy_plan(
        tmp_path, legacy, target, limits=LIMITS, proxy_extra=f"grace_seconds = 0.2\nworkers = {WORKERS}"
    )
    env = {
        **os.environ,
        "SRC_MASTER_PW": legacy.master_password,
        "DST_MASTER_PW": target.master_password,
        **env,
    }
    proc = subprocess.Popen([*CUTOVER, "proxy", "--plan", str(plan_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)  # fmt: skip
    try:
        assert proc.stdout is not None and "imap" in proc.stdout.readline()  # bound: connections queue
        running = Running(proc, ports["imap"], load_plan(plan_path))
        assert eventually(lambda: len(running.workers()), WORKERS, timeout=30) == WORKERS
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        assert proc.stderr is not None
        print(proc.stderr.read())


@pytest.fixture
def proxy(tmp_path: Path, dovecot_factory: DovecotFactory) -> Iterator[Running]:
    with running_proxy(tmp_path, dovecot_factory) as running:
        yield running


def test_the_unauthenticated_limit_is_the_plans_over_all_workers(proxy: Running) -> None:
    waiting = [Raw(proxy.port) for _ in range(3)]
    assert all(w.greeting.startswith(b"* OK") for w in waiting)
    # Connections spread over the workers (SO_REUSEPORT hashes each one's source port): with limits
    # per worker, most of these would be let in.
    refused = [Raw(proxy.port) for _ in range(10)]
    assert [r.greeting for r in refused] == [BUSY] * 10
    assert waiting[0].command(b"a", b"LOGIN alice alice-secret").startswith(b"a OK")
    # A logged-in session no longer counts (its worker releases it just after answering OK).
    assert eventually(lambda: Raw(proxy.port).greeting[:4], b"* OK") == b"* OK"


def test_failed_logins_lock_out_on_every_worker(proxy: Running) -> None:
    for tag in (b"a", b"b"):
        raw = Raw(proxy.port)
        assert raw.command(tag, b"LOGIN alice wrong-password").startswith(tag + b" NO [AUTHENTICATIONFAILED]")
        raw.close()
    for _ in range(8):  # the right password, too late, whichever worker answers
        raw = Raw(proxy.port)
        assert raw.command(b"c", b"LOGIN alice alice-secret") == b"c " + LOCKED
        raw.close()


def test_a_switch_ends_moved_sessions_on_every_worker_and_status_sums_them(proxy: Running) -> None:
    sessions = []
    for n in range(6):  # one at a time: at most 3 unauthenticated at once
        user = b"alice" if n % 2 == 0 else b"bob"
        sessions.append(raw := Raw(proxy.port))
        assert raw.command(b"a", b"LOGIN " + user + b" " + user + b"-secret").startswith(b"a OK")
    store = StateStore(proxy.plan.state_db)
    try:
        counted = eventually(lambda: [(s.backend, s.service, s.sessions) for s in store.proxy_sessions()],
                             [("legacy", "imap", 6)], timeout=30)  # fmt: skip
        assert counted == [("legacy", "imap", 6)]  # every worker's sessions, summed
    finally:
        store.close()
    switch_wave(proxy.plan, "pilot")  # alice's wave: each worker sees it in its own poll
    for n, raw in enumerate(sessions):
        if n % 2 == 0:
            assert raw.line() == MOVED
            assert raw.line() == b""
        else:
            assert raw.command(b"b", b"NOOP").startswith(b"b OK")  # bob's wave didn't switch
    again = Raw(proxy.port)
    assert again.command(b"a", b"LOGIN alice alice-secret").startswith(b"a OK")  # now to the target


def test_a_dead_worker_is_replaced_and_sigterm_stops_every_worker(proxy: Running) -> None:
    first = proxy.workers()
    victim = min(first)
    os.kill(victim, signal.SIGKILL)
    replaced = eventually(lambda: len(proxy.workers() - first), 1, timeout=30)
    assert replaced == 1 and victim not in proxy.workers()
    for _ in range(6):
        raw = Raw(proxy.port)
        assert raw.command(b"a", b"LOGIN bob bob-secret").startswith(b"a OK")
        raw.close()
    workers = proxy.workers()
    proxy.proc.send_signal(signal.SIGTERM)
    assert proxy.proc.wait(60) == 0
    assert not any(alive(pid) for pid in workers)


def test_workers_stop_when_the_parent_is_killed(proxy: Running) -> None:
    workers = proxy.workers()
    listeners = listening_sockets(proxy.port)
    assert listeners
    os.kill(proxy.proc.pid, signal.SIGKILL)
    proxy.proc.wait(10)
    deadline = time.monotonic() + 30
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(pid) for pid in workers)
    assert not listeners & listening_sockets(proxy.port)  # no process kept the proxy's listeners


def _spool_plan(tmp_path: Path, dovecot_factory: DovecotFactory) -> tuple[Path, dict[str, str]]:
    legacy: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    target: DovecotServer = dovecot_factory(USERS, extra_conf=QUICK_FAILURES)
    (smtp,) = free_ports(1)
    plan_path, _ = write_proxy_plan(
        tmp_path, legacy, target, proxy_extra=f"smtp_port = {smtp}\nworkers = 3",
        tail='[proxy.smtp]\nstore_and_forward = true\nspool_dir = "spool"\n',
    )  # fmt: skip
    env = {**os.environ, "SRC_MASTER_PW": legacy.master_password, "DST_MASTER_PW": target.master_password}
    return plan_path, env


def test_the_port_25_listener_and_its_spool_are_one_workers(
    tmp_path: Path, dovecot_factory: DovecotFactory
) -> None:
    plan_path, _ = _spool_plan(tmp_path, dovecot_factory)
    options = load_plan(plan_path).proxy
    assert options is not None
    per_worker = bind_listeners(options, 3)
    try:
        services = [sorted(str(listener.service) for listener in prebound) for prebound in per_worker]
        assert services == [["imap", "pop3", "smtp"], ["imap", "pop3"], ["imap", "pop3"]]
    finally:
        close_all(per_worker)


def test_a_worker_that_cannot_run_stops_the_proxy(tmp_path: Path, dovecot_factory: DovecotFactory) -> None:
    plan_path, env = _spool_plan(tmp_path, dovecot_factory)
    held = Spool(load_plan(plan_path).proxy.smtp.spool_dir)  # type: ignore[union-attr,arg-type]
    try:
        done = subprocess.run([*CUTOVER, "proxy", "--plan", str(plan_path)], capture_output=True, text=True,
                              env=env, timeout=120, check=False)  # fmt: skip
    finally:
        held.close()
    assert done.returncode == 2, done.stderr
    assert "another proxy is using the spool" in done.stderr


@pytest.mark.parametrize("loop", ["uvloop", "asyncio"])
def test_each_workers_listen_queue_holds_a_burst_while_the_workers_are_busy(
    tmp_path: Path, dovecot_factory: DovecotFactory, loop: str
) -> None:
    # asyncio's start_server listens again on a socket it is given, with its own default queue of
    # 100 unless told otherwise: the workers' sockets must keep the proxy's queue on either loop.
    env = {}
    if loop == "asyncio":  # as where uvloop is not installed: an import of it fails
        (tmp_path / "no-uvloop").mkdir()
        (tmp_path / "no-uvloop" / "uvloop.py").write_text("raise ImportError('not installed')\n")
        env["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(tmp_path / "no-uvloop"), os.environ.get("PYTHONPATH")])
        )
    with running_proxy(tmp_path, dovecot_factory, **env) as proxy:
        # Every worker serving (its loop listening on its socket): 30 greetings, spread over the
        # workers by SO_REUSEPORT, miss one of 3 workers with a chance of (2/3)**30, about 5e-6.
        for _ in range(30):
            Raw(proxy.port).close()
        workers = proxy.workers()
        for pid in workers:
            os.kill(pid, signal.SIGSTOP)  # nothing accepts meanwhile: the kernel's queues hold the burst
        try:
            # 200 a worker on average: more than asyncio's 100 each, well within the proxy's 511.
            burst = 200 * WORKERS
            assert connected_within(proxy.port, burst, 0.8) == burst
        finally:
            for pid in workers:
                os.kill(pid, signal.SIGCONT)
