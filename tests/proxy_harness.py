"""The routing proxy in a test: two real Dovecots (legacy and target), a plan with a ``[proxy]``
section on free loopback ports, and the proxy running on its own asyncio loop in a thread.

``alice`` is in wave ``pilot``, ``bob`` in wave ``later``; both exist on both sides with the same
passwords (the target also knows ``carol@tenant.example``, to show the target's login suffix).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servers.dovecot import DovecotServer
from servers.process import free_ports

from runners.plan.loader import load_plan
from runners.plan.model import Plan
from runners.proxy.context import ProxyContext
from runners.proxy.contracts import LoginEvent, Password
from runners.proxy.server import ProxyServer, build_context
from runners.state.statuses import StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import Actor

USERS = {"alice": "alice-secret", "bob": "bob-secret"}
#: Dovecot delays a refusal by 2 s by default: the tests' backends answer at once.
QUICK_FAILURES = "auth_failure_delay = 0\n"
#: The proxy's 1 s for a backend's greeting is tight for a Dovecot on a loaded test machine; tests of
#: that deadline set it themselves.
PATIENT = "backend_connect_seconds = 10"


@dataclass
class Recorder:
    """A LoginObserver that keeps every event (and whether a password came with it)."""

    events: list[tuple[LoginEvent, bool]] = field(default_factory=list)

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None:
        self.events.append((event, password is not None))

    def outcomes(self) -> list[tuple[str, str, str | None]]:
        return [(e.login, e.outcome.value, e.route.backend if e.route else None) for e, _ in self.events]


def write_proxy_plan(
    root: Path,
    legacy: DovecotServer,
    target: DovecotServer,
    *,
    proxy_extra: str = "",
    limits: str = "",
    target_extra: str = "",
    tail: str = "",
) -> tuple[Path, dict[str, int]]:
    """The plan and the proxy's ports (``imap``, ``pop3``)."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "mailboxes.csv").write_text("source,target,wave\nalice,alice,pilot\nbob,bob,later\n")
    imap, pop3 = free_ports(2)
    plan = root / "plan.toml"
    plan.write_text(f"""
[source]
type = "imap"
host = "127.0.0.1"
port = {legacy.imap_port}
security = "plain"
auth = "master"
master_user = "{legacy.master_user}"
master_password = "env:SRC_MASTER_PW"

[target]
type = "imap"
host = "127.0.0.1"
port = {target.imap_port}
security = "plain"
auth = "master"
master_user = "{target.master_user}"
master_password = "env:DST_MASTER_PW"

[mailboxes]
csv = "mailboxes.csv"

[proxy]
listen = "127.0.0.1"
imap_port = {imap}
pop3_port = {pop3}
{proxy_extra}

[proxy.backends.legacy]
pop3 = "127.0.0.1:{legacy.pop3_port}"
pop3_tls = "none"

[proxy.backends.target]
pop3 = "127.0.0.1:{target.pop3_port}"
pop3_tls = "none"
{target_extra}

[proxy.limits]
auth_failure_delay_seconds = 0
{limits}
{"" if "backend_connect_seconds" in limits else PATIENT}

{tail}
""")
    return plan, {"imap": imap, "pop3": pop3}


def switch_wave(plan: Plan, wave: str, step: str = "switched") -> None:
    """Record ``wave``'s step as the window's switch step does once it is done."""
    store = StateStore(plan.state_db)
    try:
        step_id = store.begin_step(wave, step, Actor("tester", "localhost"), {})
        store.end_step(step_id, StepStatus.DONE)
    finally:
        store.close()


class ProxyThread:
    """``cutover proxy`` in-process: its loop in a thread, stopped at the end of the test."""

    def __init__(
        self,
        plan_path: Path,
        *,
        observers: list[Any] | None = None,
        poll_seconds: float = 0.05,
        uvloop: bool = False,
    ) -> None:
        self.plan = load_plan(plan_path)
        self.observers = observers or []
        self.poll_seconds = poll_seconds
        if uvloop:  # the loop `cutover proxy` runs on where uvloop is installed
            import uvloop as fast_loops

            self.loop = fast_loops.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.ctx: ProxyContext | None = None
        self.server: ProxyServer | None = None
        self._stop: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        self._started.wait(20)
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn`` on the proxy's loop and return its result (counts, registry reads)."""

        async def run() -> Any:
            return fn()

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def poll(self) -> None:
        """One look at the store now, as the server does every ``poll_seconds``."""
        assert self.server is not None
        self.call(self.server.poll)

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._serve())
        # As asyncio.Runner does for `cutover proxy`: what is still pending (a stop watcher woken by
        # the event but not yet run) is cancelled and let finish, not dropped with the loop.
        pending = asyncio.all_tasks(self.loop)
        for task in pending:
            task.cancel()
        self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    async def _serve(self) -> None:
        store = StateStore(self.plan.state_db)
        try:
            self.ctx = build_context(self.plan, store, observers=self.observers)
            self.server = ProxyServer(self.ctx, poll_seconds=self.poll_seconds)
            self._stop = asyncio.Event()
            await self.server.start()
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        await self.server.serve(self._stop)
        store.close()


def proxies(plan_path: Path, **options: Any) -> Iterator[ProxyThread]:
    with ProxyThread(plan_path, **options) as proxy:
        yield proxy


def eventually(fetch: Callable[[], Any], expected: Any, timeout: float = 10.0) -> Any:
    """``fetch()`` once it equals ``expected`` (what a proxy's loop finishes just after a socket closes)."""
    import time

    deadline = time.monotonic() + timeout
    while (got := fetch()) != expected and time.monotonic() < deadline:
        time.sleep(0.01)
    return got
