"""The proxy assembled: one asyncio loop, a listener per ``[proxy]`` port, the router kept current.

``build_context`` makes what every listener shares; ``ProxyServer`` starts the IMAP and POP3
listeners (IMAP/IMAPS, POP3/POP3S) plus any extra "start listener" coroutines it is given (the SMTP
side's), polls the state store's switch marker about once a second, and on a switch drops the
router's cached decisions and ends the moved users' sessions after the grace period (when the plan
sets one). Observers of logins (the journal, the credential capture, the on-login queueing) are
passed in by whoever runs the proxy. A worker process of a multi-process proxy (``workers``) is given
the listening sockets its parent bound (``prebound``) and the limits the workers share.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from runners.plan.model import Plan
from runners.proxy.backend_connect import BackendTls
from runners.proxy.client_conn import ClientConn
from runners.proxy.client_tls import client_context
from runners.proxy.context import ProxyContext, log
from runners.proxy.contracts import LISTEN_BACKLOG, Listener, LoginObserver, Relay, Service, TlsMode
from runners.proxy.deadlines import SessionDeadlines
from runners.proxy.directory_lookup import DirectoryLookup
from runners.proxy.imap_session import ImapSession
from runners.proxy.limits import Limits, LoginLimits
from runners.proxy.pop3_session import Pop3Session
from runners.proxy.registry import SessionRegistry
from runners.proxy.relay import relay as default_relay
from runners.proxy.router import PlanRouter
from runners.proxy.settings import backends, listeners
from runners.proxy.smtp_listeners import SmtpListeners, start_smtp_listeners
from runners.state.store import StateStore

#: Listening sockets bound before the proxy starts (by a multi-process proxy's parent), per listener.
Prebound = Mapping[Listener, Sequence[socket.socket]]
#: Starts more listeners on the shared context (the SMTP side's); returns the servers to close at the end.
StartListener = Callable[[ProxyContext], Awaitable[Sequence[asyncio.Server]]]

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
    limits: Limits | None = None,
) -> ProxyContext:
    """Everything the listeners share, for a plan with a ``[proxy]`` section (``limits``: this
    process's own unless given, e.g. the ones a multi-process proxy's workers share)."""
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
        limits=limits if limits is not None else LoginLimits(options.limits),
        registry=SessionRegistry(),
        observers=list(observers),
        relay=relay,
        client_tls=client_context(options.certificates),
        backend_tls=BackendTls(),
        deadlines=SessionDeadlines(options.limits),
    )


@dataclass(frozen=True, slots=True)
class Bound:
    """A listener and the address it actually got (port 0 in a test's plan: the kernel chose)."""

    listener: Listener
    host: str
    port: int

    @classmethod
    def of(cls, listener: Listener, sock: socket.socket) -> Bound:
        """The address ``sock`` (one of ``listener``'s) is bound to."""
        host, port = sock.getsockname()[:2]
        return cls(listener, host, port)


class ProxyServer:
    def __init__(
        self,
        ctx: ProxyContext,
        *,
        extra_listeners: Sequence[StartListener] = (),
        poll_seconds: float = 1.0,
        prebound: Prebound | None = None,
    ) -> None:
        self.ctx = ctx
        #: The listeners this process serves on sockets bound for it (None: it binds every listener).
        self.prebound = prebound
        self.extra_listeners = extra_listeners
        self.poll_seconds = poll_seconds
        self.bound: list[Bound] = []
        self._servers: list[asyncio.Server] = []
        #: The connections' handlers, cancelled when the proxy stops (a listener's close leaves them).
        self._handlers: set[asyncio.Task[None]] = set()
        #: The SMTP side (submission and inbound, the spool's delivery), when the plan listens for it.
        self._smtp: SmtpListeners | None = None

    async def start(self) -> None:
        """Bind every listener (raises ``OSError`` when an address is taken: nothing stays bound then)."""
        try:
            for listener in listeners(self.ctx.options):
                session = _SESSIONS.get(listener.service)
                if session is None:
                    continue  # SMTP: started by its own start-listener coroutine
                if self.prebound is None:
                    servers = [await self._listen(listener, session)]
                else:
                    servers = [
                        await self._listen(listener, session, s) for s in self.prebound.get(listener, ())
                    ]
                self._servers.extend(servers)
                self.bound.extend(Bound.of(listener, sock) for server in servers for sock in server.sockets)
            await self._start_smtp()
            for start in self.extra_listeners:
                self._servers.extend(await start(self.ctx))
        except BaseException:
            await self.close()
            raise

    async def _listen(
        self,
        listener: Listener,
        session: type[ImapSession] | type[Pop3Session],
        sock: socket.socket | None = None,
    ) -> asyncio.Server:
        ctx = self.ctx
        implicit = listener.tls == TlsMode.IMPLICIT

        handlers = self._handlers
        loop = asyncio.get_running_loop()

        def connected(conn: ClientConn) -> None:
            # The session's coroutine is the task's own (no wrapper frame to pass at each resume); a
            # task the proxy's stop cancelled ends cancelled, which close() gathers.
            client = session(ctx, conn, implicit)
            task = client.task = loop.create_task(client.run())
            handlers.add(task)
            task.add_done_callback(handlers.discard)

        # A partial, not a function of ours: the loop calls it for every connection.
        factory = functools.partial(ClientConn, loop, connected)

        tls = ctx.client_tls if implicit else None
        handshake = ctx.options.limits.login_timeout_seconds if implicit else None
        if sock is not None:
            # A socket given to create_server is listened on again, with its backlog: the same queue.
            return await loop.create_server(factory, sock=sock, ssl=tls, ssl_handshake_timeout=handshake,
                                            backlog=LISTEN_BACKLOG)  # fmt: skip
        return await loop.create_server(factory, listener.host, listener.port, ssl=tls,
                                        ssl_handshake_timeout=handshake, reuse_address=True,
                                        backlog=LISTEN_BACKLOG)  # fmt: skip

    async def _start_smtp(self) -> None:
        ctx = self.ctx
        wanted = [
            item for item in listeners(ctx.options) if item.service in (Service.SUBMISSION, Service.SMTP)
        ]
        if self.prebound is not None:
            wanted = [item for item in wanted if item in self.prebound]
        if not wanted:
            return
        self._smtp = await start_smtp_listeners(
            ctx.router, ctx.backends, wanted, ctx.client_tls, ctx.observers, ctx.options.smtp, relay=ctx.relay,
            prebound=self.prebound,
        )  # fmt: skip
        for server, listener in zip(self._smtp.servers, self._smtp.listeners, strict=True):
            self.bound.extend(Bound.of(listener, sock) for sock in server.sockets)

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
        if self._smtp is not None:
            await self._smtp.close()
            self._smtp = None
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
    on_context: Callable[[ProxyContext], None] | None = None,
    prebound: Prebound | None = None,
    limits: Limits | None = None,
) -> None:
    """The whole proxy until ``stop`` is set: where ``cutover proxy`` wires the login observers (the
    journal, the credential capture, the on-login queueing) and the SMTP side's listeners in.
    Raises ``OSError`` when a listener can't bind (nothing stays bound then). A worker of a
    multi-process proxy passes the sockets it serves (``prebound``) and the shared ``limits``."""
    ctx = build_context(plan, store, observers=observers, limits=limits)
    if on_context is not None:  # the store side publishes ctx.registry's session counts
        on_context(ctx)
    server = ProxyServer(ctx, extra_listeners=extra_listeners, prebound=prebound)
    await server.start()
    if on_bound is not None:
        on_bound(server.bound)
    await server.serve(stop)
