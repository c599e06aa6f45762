"""Starts the proxy's SMTP side: a server per submission or port-25 listener, and the spool's delivery.

``start_smtp_listeners`` is what the proxy's server assembly calls; it returns the started asyncio
servers and, with store-and-forward on, the task that delivers the spool (cancel it to stop).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import traceback
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy.client_conn import ClientConn
from runners.proxy.contracts import (
    LISTEN_BACKLOG,
    Listener,
    LoginObserver,
    ProxyBackend,
    Relay,
    Router,
    Service,
    TlsMode,
)
from runners.proxy.relay import relay as default_relay
from runners.proxy.smtp_client import ConnClient, SubmissionConn
from runners.proxy.smtp_inbound import serve_inbound
from runners.proxy.smtp_session import ClientConnection, SmtpProxy
from runners.proxy.smtp_submission import serve_submission
from runners.proxy.spool import Spool
from runners.proxy.spool_delivery import SpoolDelivery
from runners.safe_text import safe

log = logging.getLogger(__name__)

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class SmtpListeners:
    """What ``start_smtp_listeners`` started."""

    servers: tuple[asyncio.Server, ...]
    #: The listener each of ``servers`` serves.
    listeners: tuple[Listener, ...]
    #: The spool's delivery loop (store-and-forward on), else None.
    delivery: asyncio.Task[None] | None
    spool: Spool | None
    proxy: SmtpProxy
    #: The sessions running now (a listener's close leaves them running: ``close`` ends them).
    sessions: set[asyncio.Task[None]]

    async def close(self) -> None:
        """Stop listening, end every session, stop delivering (spooled mail stays for the next start).

        A message being received and not yet answered 250 is dropped: its sender retries it.
        """
        self.proxy.stop.set()
        for server in self.servers:
            server.close()
        if self.sessions:  # relayed sessions end on ``stop`` by themselves: give them a moment
            await asyncio.wait(set(self.sessions), timeout=1.0)
        pending = [t for t in (*self.sessions, self.delivery) if t is not None]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        if self.spool is not None:
            self.spool.close()
        for server in self.servers:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), 2.0)


async def start_smtp_listeners(
    router: Router,
    backends: Mapping[str, ProxyBackend],
    listeners: Sequence[Listener],
    tls_context: ssl.SSLContext | None,
    observers: Sequence[LoginObserver],
    settings: ProxySmtpSettings,
    *,
    relay: Relay = default_relay,
    prebound: Mapping[Listener, Sequence[socket.socket]] | None = None,
) -> SmtpListeners:
    """Listen on every SUBMISSION and SMTP listener (others are ignored). Raises OSError when a port is taken,
    ValueError when an implicit-TLS listener has no TLS context or store-and-forward has no spool, and
    ``SpoolLocked`` when another process uses the spool. ``prebound``: the sockets to serve each
    listener on (a multi-process proxy's worker), instead of binding them here."""
    proxy = SmtpProxy(router, backends, settings, tls_context, tuple(observers), relay)
    spool: Spool | None = None
    delivery: SpoolDelivery | None = None
    # A multi-process proxy gives the port-25 listeners, hence the spool, to one worker alone.
    serves_inbound = prebound is None or any(item.service is Service.SMTP for item in prebound)
    if settings.store_and_forward and serves_inbound:
        if settings.spool_dir is None:
            raise ValueError("store_and_forward needs a spool_dir")
        spool = await asyncio.to_thread(Spool, settings.spool_dir)
        delivery = SpoolDelivery(spool, backends, settings)
    servers: list[asyncio.Server] = []
    served: list[Listener] = []
    sessions: set[asyncio.Task[None]] = set()
    try:
        for listener in listeners:
            if listener.service not in (Service.SUBMISSION, Service.SMTP):
                continue
            implicit = listener.tls is TlsMode.IMPLICIT
            if implicit and tls_context is None:
                raise ValueError(
                    f"listener {listener.host}:{listener.port} wants TLS but there is no certificate"
                )
            tls = tls_context if implicit else None
            if listener.service is Service.SUBMISSION:
                for sock in prebound.get(listener, ()) if prebound is not None else (None,):
                    servers.append(await _submission_server(proxy, listener, tls, sessions, sock))
                    served.append(listener)
                continue
            handler = _handler(proxy, listener, spool, None if delivery is None else delivery.wake, sessions)
            if prebound is None:
                server = await asyncio.start_server(
                    handler, listener.host, listener.port, ssl=tls, backlog=LISTEN_BACKLOG
                )
                servers.append(server)
                served.append(listener)
                continue
            for sock in prebound.get(listener, ()):
                servers.append(
                    await asyncio.start_server(handler, sock=sock, ssl=tls, backlog=LISTEN_BACKLOG)
                )
                served.append(listener)
    except BaseException:
        for server in servers:
            server.close()
        if spool is not None:
            spool.close()
        raise
    task = None if delivery is None else asyncio.create_task(delivery.run(), name="smtp-spool-delivery")
    return SmtpListeners(tuple(servers), tuple(served), task, spool, proxy, sessions)


def _submission_server(
    proxy: SmtpProxy,
    listener: Listener,
    tls: ssl.SSLContext | None,
    sessions: set[asyncio.Task[None]],
    sock: socket.socket | None,
) -> Awaitable[asyncio.Server]:
    """A submission listener's server: each client's connection a ``SubmissionConn`` (no streams), its
    session a task of its own, started when the connection is made."""
    loop = asyncio.get_running_loop()
    timeout = proxy.settings.client_timeout_seconds
    implicit = listener.tls is TlsMode.IMPLICIT

    def connected(conn: ClientConn) -> None:
        assert isinstance(conn, SubmissionConn)
        client = ConnClient(conn, tls=implicit, timeout=timeout)
        # The task starts on the loop's next turn, after it was given to the client.
        task = client.task = loop.create_task(
            _guarded(client.address, serve_submission(proxy, listener.tls, client))
        )
        sessions.add(task)
        task.add_done_callback(sessions.discard)

    def factory() -> SubmissionConn:
        return SubmissionConn(loop, connected)

    if sock is not None:
        return loop.create_server(factory, sock=sock, ssl=tls, backlog=LISTEN_BACKLOG)
    return loop.create_server(factory, listener.host, listener.port, ssl=tls, backlog=LISTEN_BACKLOG)


async def _guarded(address: str, session: Awaitable[None]) -> None:
    """One client's session, whose failure ends it alone: the proxy never dies on one session's input."""
    try:
        await session
    except OSError:
        pass  # the client or the network went away (ConnectionError is one): nothing to answer
    except Exception as exc:
        # Type and place only: an exception's message or locals may hold what the client sent.
        log.error("SMTP session from %s failed: %s at %s", safe(address), type(exc).__name__, _where(exc))


def _handler(
    proxy: SmtpProxy,
    listener: Listener,
    spool: Spool | None,
    spooled: asyncio.Event | None,
    sessions: set[asyncio.Task[None]],
) -> Handler:
    implicit = listener.tls is TlsMode.IMPLICIT

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = ClientConnection(reader, writer, tls=implicit, timeout=proxy.settings.client_timeout_seconds)
        sessions.add(conn.task)
        conn.task.add_done_callback(sessions.discard)
        await _guarded(conn.address, serve_inbound(proxy, listener.tls, conn, spool, spooled))

    return handle


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f"{frames[-1].filename}:{frames[-1].lineno}" if frames else "?"
