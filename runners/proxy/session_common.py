"""What the IMAP and POP3 sessions share around a login: the lock-out check, the route, the backend's
connection within its deadline, telling the observers, the failure delay, and the relay afterwards."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable

from runners.proxy.addresses import is_loopback
from runners.proxy.backend_connect import BackendUnavailable, where
from runners.proxy.client_conn import ClientConn, ClientGone
from runners.proxy.context import ProxyContext, log
from runners.proxy.contracts import BackendEndpoint, Leg, LoginEvent, Outcome, Password, Route, Service
from runners.proxy.registry import FAREWELL
from runners.safe_text import MASK, safe

#: What a backend or the network may raise while the proxy talks to it before the relay.
BACKEND_ERRORS = (BackendUnavailable, OSError, ssl.SSLError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                  ValueError, TimeoutError)  # fmt: skip


class Refused(Exception):
    """The proxy refuses the login itself (a lock-out, a backend without the service)."""


def clear_login_refused(ctx: ProxyContext, tls: bool, address: str) -> bool:
    """Whether a login in clear must be refused: the proxy offers TLS, the connection doesn't use it,
    and the plan's ``plaintext_logins`` doesn't allow this client (loopback clients by default)."""
    if tls or ctx.client_tls is None:
        return False
    policy = ctx.options.plaintext_logins
    if policy == "always":
        return False
    if policy == "never":
        return True
    # A UNIX socket or something stranger is not loopback; the answers are kept (asked twice a session).
    return not is_loopback(address.partition("%")[0])


def event(
    service: Service, address: str, login: str, route: Route | None, outcome: Outcome, detail: str = ""
) -> LoginEvent:
    # A login that isn't UTF-8 reached the backend byte for byte; the journal gets it readable (an
    # ASCII one, the usual, has no byte to replace).
    if not login.isascii():
        login = login.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return LoginEvent(service, address, login, route, outcome, detail)


def endpoint_of(ctx: ProxyContext, route: Route, service: Service) -> BackendEndpoint:
    backend = ctx.backends.get(route.backend)
    endpoint = backend.endpoints.get(service) if backend is not None else None
    if endpoint is None:
        raise BackendUnavailable(f"backend {route.backend} has no {service} endpoint in the plan")
    return endpoint


def words(text: str, password: Password) -> str:
    """A backend's words, safe to journal and show: one line, no control, never the password."""
    secret = password.reveal()
    if len(secret) >= 4:
        text = text.replace(secret, MASK)
    return safe(text)


def unavailable_detail(route: Route, endpoint: BackendEndpoint | None, exc: BaseException) -> str:
    if isinstance(exc, BackendUnavailable):
        return exc.detail
    place = f"{route.backend} ({where(endpoint)})" if endpoint is not None else route.backend
    if isinstance(exc, TimeoutError):
        return f"{place}: no answer in time"
    if isinstance(exc, asyncio.IncompleteReadError):
        return f"{place}: closed the connection"
    return f"{place}: {safe(exc) or type(exc).__name__}"


async def close_leg(leg: Leg | None) -> None:
    """Close a backend's connection that will not be relayed (a refusal, a failure), and wait for it."""
    if leg is None:
        return
    leg.transport.close()
    try:
        await leg.wait_closed()
    except (OSError, ssl.SSLError, TimeoutError):
        pass
    except asyncio.CancelledError:
        # A close the loop cancelled is a close; this session's own cancel (the proxy shutting
        # down while a TLS backend never answers the close) must reach the session.
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise


async def relay_session(
    ctx: ProxyContext, service: Service, route: Route, address: str, client: Leg, backend: Leg
) -> None:
    """The relay, with the session counted in the registry while it lasts."""
    wave = ctx.router.wave_of(route.user)
    session = ctx.registry.open(service, route.backend, route.user, address, client.transport, wave)
    try:
        await ctx.relay(client, backend, session.stop)
    except Exception as exc:  # the relay's bug must not take the proxy down
        log.warning("relay of a %s session ended with %s", service, type(exc).__name__)
    finally:
        ctx.registry.remove(session)


class ClientSession:
    """What an IMAP or POP3 client's session starts with, and what :func:`serve_login` needs of it:
    its connection (``write`` and ``tls`` change on STARTTLS), its address, its task (set once made)."""

    __slots__ = ("address", "bad", "conn", "ctx", "task", "tls", "write")

    def __init__(self, ctx: ProxyContext, conn: ClientConn, tls: bool) -> None:
        self.ctx = ctx
        self.task: asyncio.Task[None]  # the connection's own, which its deadlines cancel
        self.conn = conn
        self.write: Callable[[bytes], object] = conn.transport.write
        self.tls = tls
        peer = conn.transport.get_extra_info("peername")
        self.address: str = peer[0] if isinstance(peer, tuple) else str(peer)
        self.bad = 0  # commands the client got wrong before login

    async def start_tls(self, context: ssl.SSLContext) -> None:
        """TLS on the client's connection (STARTTLS, STLS), what it sent before the handshake discarded."""
        await self.conn.start_tls(context)
        self.write = self.conn.transport.write
        self.tls = True


async def serve_login(
    session: ClientSession,
    service: Service,
    until_logged_in: Callable[[], Awaitable[tuple[Route, Leg] | None]],
    *,
    busy: bytes,
    greeting: Callable[[], bytes],
    idle: bytes,
    closed: type[Exception],
) -> None:
    """One client's session: the per-address admission, the greeting, the login within its deadline, then
    the relay; ``busy``, ``greeting`` and ``idle`` are the protocol's words, ``closed`` its client-went-away."""
    ctx, conn, address = session.ctx, session.conn, session.address
    if not ctx.limits.admit(address):
        session.write(busy)
        await _close_client(conn)
        return
    admitted = True
    try:
        session.write(greeting())
        task = session.task
        deadline = ctx.deadlines.login
        deadline.start(task)
        try:
            logged_in = await until_logged_in()
        except asyncio.CancelledError:
            if not deadline.expired(task):
                raise  # the proxy stops
            session.write(idle)
            return
        finally:
            deadline.stop(task)
        if logged_in is None:
            return
        ctx.limits.release(address)
        admitted = False
        route, backend = logged_in
        client = conn.leg(session.tls, FAREWELL[service])
        await relay_session(ctx, service, route, address, client, backend)
    except (closed, OSError, ConnectionError, asyncio.IncompleteReadError, ClientGone):
        pass
    except Exception as exc:  # never let one client's input take the listener down
        log.warning("%s session from %s ended by %s", service, address, type(exc).__name__)
    finally:
        if admitted:
            ctx.limits.release(address)
        await _close_client(conn)


async def _close_client(conn: ClientConn) -> None:
    try:  # not contextlib.suppress: three Python calls a session
        await conn.close()
    except (OSError, ssl.SSLError, asyncio.CancelledError, TimeoutError):
        pass
