"""The proxy assembled: one asyncio loop, a listener per ``[proxy]`` port, the router kept current.

``build_context`` makes what every listener shares; ``ProxyServer`` starts the IMAP and POP3
listeners (IMAP/IMAPS, POP3/POP3S) plus any extra "start listener" coroutines it is given (the SMTP
side's), polls the state store's switch marker about once a second, and on a switch drops the
router's cached decisions and ends the moved users' sessions after the grace period (when the plan
sets one). Observers of logins (the journal, the credential capture, the on-login queueing) are
passed in by whoever runs the proxy.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from runners.plan.model import Plan
from runners.proxy.backend_connect import BackendTls
from runners.proxy.client_tls import client_context
from runners.proxy.context import ProxyContext, log
from runners.proxy.contracts import Listener, LoginObserver, Relay, Service, TlsMode
from runners.proxy.directory_lookup import DirectoryLookup
from runners.proxy.imap_session import ImapSession
from runners.proxy.limits import LoginLimits
from runners.proxy.pop3_session import Pop3Session
from runners.proxy.registry import SessionRegistry
from runners.proxy.relay import relay as default_relay
from runners.proxy.router import PlanRouter
from runners.proxy.settings import backends, listeners
from runners.state.store import StateStore

#: Starts more listeners on the shared context (the SMTP side's); returns the servers to close at the end.
StartListener = Callable[[ProxyContext], Awaitable[Sequence[asyncio.Server]]]

#: The client's stream buffer: lines before login are held to ``max_line_bytes`` by the sessions;
#: this only bounds what one read may hold, and keeps the relay's reads large.
_CLIENT_LIMIT = 64 * 1024
_SESSIONS: dict[Service, type[ImapSession] | type[Pop3Session]] = {
    Service.IMAP: ImapSession,
    Service.POP3: Pop3Session,
}


def build_context(
    plan: Plan,
    store: StateStore | None,
    *,
    observers: Sequence[LoginObserver] = (),
    relay: Relay = default_relay,
) -> ProxyContext:
    """Everything the listeners share, for a plan with a ``[proxy]`` section."""
    options = plan.proxy
    if options is None:
        raise ValueError("the plan has no [proxy] section")
    routing = options.routing
    directory = None
    if routing.directory is not None:
        directory = DirectoryLookup(routing.directory, routing.attribute, routing.match)
    all_backends = backends(options)
    return ProxyContext(
        options=options,
        router=PlanRouter(plan, all_backends, store, directory=directory),
        backends=all_backends,
        limits=LoginLimits(options.limits),
        registry=SessionRegistry(),
        observers=list(observers),
        relay=relay,
        client_tls=client_context(options.certificates),
        backend_tls=BackendTls(),
    )


@dataclass(frozen=True, slots=True)
class Bound:
    """A listener and the address it actually got (port 0 in a test's plan: the kernel chose)."""

    listener: Listener
    host: str
    port: int


class ProxyServer:
    def __init__(
        self,
        ctx: ProxyContext,
        *,
        extra_listeners: Sequence[StartListener] = (),
        poll_seconds: float = 1.0,
    ) -> None:
        self.ctx = ctx
        self.extra_listeners = extra_listeners
        self.poll_seconds = poll_seconds
        self.bound: list[Bound] = []
        self._servers: list[asyncio.Server] = []
        #: The connections' handlers, cancelled when the proxy stops (a listener's close leaves them).
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Bind every listener (raises ``OSError`` when an address is taken: nothing stays bound then)."""
        try:
            for listener in listeners(self.ctx.options):
                session = _SESSIONS.get(listener.service)
                if session is None:
                    continue  # SMTP: started by its own start-listener coroutine
                server = await self._listen(listener, session)
                self._servers.append(server)
                for sock in server.sockets:
                    host, port = sock.getsockname()[:2]
                    self.bound.append(Bound(listener, host, port))
            for start in self.extra_listeners:
                self._servers.extend(await start(self.ctx))
        except BaseException:
            await self.close()
            raise

    async def _listen(
        self, listener: Listener, session: type[ImapSession] | type[Pop3Session]
    ) -> asyncio.Server:
        ctx = self.ctx
        implicit = listener.tls == TlsMode.IMPLICIT

        handlers = self._handlers

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            handlers.add(task)
            try:
                await session(ctx, reader, writer, implicit).run()
            except asyncio.CancelledError:
                pass  # the proxy stops; 3.11's stream callback would choke on a cancelled handler
            finally:
                handlers.discard(task)

        return await asyncio.start_server(
            handle,
            listener.host,
            listener.port,
            ssl=ctx.client_tls if implicit else None,
            limit=_CLIENT_LIMIT,
            ssl_handshake_timeout=ctx.options.limits.login_timeout_seconds if implicit else None,
            reuse_address=True,
        )

    async def serve(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set, keeping the router current; then close the listeners."""
        try:
            while not stop.is_set():
                self.poll()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self.poll_seconds):
                        await stop.wait()
        finally:
            await self.close()

    def poll(self) -> None:
        """One look at the store: on a switch, drop cached decisions and schedule the moved sessions' end."""
        ctx = self.ctx
        try:
            changed = ctx.router.refresh()
        except Exception as exc:  # a store that can't be read now is read again next second
            log.warning("routing proxy: can't read the state store: %s", type(exc).__name__)
            return
        if not changed:
            return
        router = ctx.router
        moved = [s for s in ctx.registry.sessions() if router.wave_of(s.user) in changed]
        ended = ctx.registry.end_moved(moved, new_backend=router.store_backend,
                                       grace_seconds=ctx.options.grace_seconds)  # fmt: skip
        log.info("routing proxy: waves %s changed side; %d open sessions moved", sorted(changed), len(ended))

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await server.wait_closed()
        self._servers.clear()
        # Logged-in sessions: their relays close both sides; then whatever is still talking is cancelled.
        self.ctx.registry.end_all()
        if self._handlers:
            await asyncio.wait(set(self._handlers), timeout=1.0)
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        if self.ctx.router.directory is not None:
            await asyncio.to_thread(self.ctx.router.directory.close)


async def run_proxy(
    plan: Plan,
    store: StateStore | None,
    stop: asyncio.Event,
    *,
    observers: Sequence[LoginObserver] = (),
    extra_listeners: Sequence[StartListener] = (),
    on_bound: Callable[[list[Bound]], None] | None = None,
) -> None:
    """The whole proxy until ``stop`` is set: where ``cutover proxy`` wires the login observers (the
    journal, the credential capture, the on-login queueing) and the SMTP side's listeners in.
    Raises ``OSError`` when a listener can't bind (nothing stays bound then)."""
    server = ProxyServer(build_context(plan, store, observers=observers), extra_listeners=extra_listeners)
    await server.start()
    if on_bound is not None:
        on_bound(server.bound)
    await server.serve(stop)
