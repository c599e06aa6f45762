"""What the proxy's parts agree on: routes, accepted logins, the observers of logins, and the relay.

The listeners (IMAP, POP3, SMTP) ask a ``Router`` where a user goes, log the user in on that backend
with the login the route rewrote, tell every ``LoginObserver`` of the outcome (the journal that
triage reads, the credential capture, the on-login queueing of a wave), then hand both connections
to a ``Relay``. Nothing here does I/O; each part implements its side in its own module.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

#: The listen queue of every listener, as nginx's: a burst of clients (or a moment the loop is busy)
#: waits in the kernel. asyncio's default of 100 dropped SYNs at 200 concurrent clients: each
#: dropped one waited a second for its retry (257-447 sessions/s against 620-970 with this queue,
#: docs/benchmarks.md). Every start_server is given it: one listens again on a socket it is given.
LISTEN_BACKLOG = 511


# In Python 3.11 every lookup of a member on its class (``Service.IMAP``) passes the enum
# metaclass's ``__getattr__`` hook: ~1.4 k instructions, several times a session. The session code
# keeps the members it names per session as module constants.
class Service(StrEnum):
    """The protocol a client speaks to the proxy."""

    IMAP = "imap"
    POP3 = "pop3"
    SUBMISSION = "submission"  # SMTP with AUTH (587 STARTTLS, 465 implicit TLS)
    SMTP = "smtp"  # inbound mail on port 25, routed per recipient


class TlsMode(StrEnum):
    IMPLICIT = "implicit"  # TLS from the first byte (993, 995, 465)
    STARTTLS = "starttls"  # plain, then STARTTLS / STLS
    NONE = "none"  # plain: to a backend only on a loopback address (the plan's rule)


@dataclass(frozen=True, slots=True)
class BackendEndpoint:
    """Where one backend speaks one service."""

    host: str
    port: int
    tls: TlsMode
    tls_verify: bool = True
    ca_file: str | None = None


@dataclass(frozen=True, slots=True)
class ProxyBackend:
    """One platform behind the proxy (``legacy``, ``target``, or another name of ``[proxy.backends]``)."""

    name: str
    endpoints: Mapping[Service, BackendEndpoint]
    #: Appended to a login that has no ``@`` (``jsmith`` -> ``jsmith@tenant.example``), for this backend only.
    login_suffix: str = ""
    #: Character substitutions applied to the login for this backend, in order (``%`` -> ``@``).
    substitutions: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Listener:
    """One address and port the proxy listens on, for one service."""

    service: Service
    host: str
    port: int
    tls: TlsMode


class DecidedBy(StrEnum):
    """Which source of truth chose the backend, in the order the router asks them."""

    STORE = "store"  # the user's wave is switched (or not) in the state store
    DIRECTORY = "directory"  # an attribute of the user's directory object
    STATIC = "static"  # the plan's static overrides
    DEFAULT = "default"  # nothing knew the user: the plan's default backend


@dataclass(frozen=True, slots=True)
class Route:
    """Where one user's session goes, and the login to present there."""

    #: The user as the plan knows them (the canonical login, before any rewriting).
    user: str
    #: The backend's name in the plan (``legacy``, ``target``, or a name of ``[proxy.backends]``).
    backend: str
    #: The login the backend is given: suffix and character substitutions applied for that backend.
    backend_login: str
    decided_by: DecidedBy
    #: Why, in words for the triage view ("wave pilot switched at 21:04Z", "mailHost=new-mx").
    reason: str = ""


class Router(Protocol):
    """Decides a user's backend. Decisions may be cached briefly; a switch drops them at once."""

    async def route_user(self, login: str) -> Route:
        """The route of a client's login (as typed by the client, before any rewriting)."""
        ...

    async def route_recipient(self, address: str) -> Route | None:
        """The route of an inbound recipient address; None when no backend knows it."""
        ...


class Password:
    """A password a client sent. Never shown: ``repr`` and ``str`` hide it; ``reveal()`` gives it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Password(<hidden>)"

    __str__ = __repr__

    # Never pickled into a queue, a log record or a traceback dump.
    def __reduce__(self) -> str | tuple[object, ...]:
        raise TypeError("a Password is not serialisable")


class Outcome(StrEnum):
    ACCEPTED = "accepted"  # the backend accepted the credentials
    REJECTED = "rejected"  # the backend refused them (its words are in ``detail``)
    UNAVAILABLE = "unavailable"  # the backend was down, slow or refused the connection
    BLOCKED = "blocked"  # the proxy refused before asking a backend (limits, lock-out, bad input)


#: The outcomes as plain names, for the sessions' hot paths: a member looked up on its class costs
#: ~1.4 k instructions in Python 3.11 (the enum metaclass's ``__getattr__`` hook runs at every class
#: attribute lookup; measured on the IMAP session with callgrind, docs/benchmarks.md).
ACCEPTED, REJECTED, UNAVAILABLE, BLOCKED = (
    Outcome.ACCEPTED,
    Outcome.REJECTED,
    Outcome.UNAVAILABLE,
    Outcome.BLOCKED,
)


# Not frozen, as the journal's LoginRow: one per login, and a frozen __init__ costs several times more.
@dataclass(slots=True)
class LoginEvent:
    """One login through the proxy, as the journal keeps it and triage shows it. Holds no password."""

    service: Service
    client_address: str
    login: str  # as the client typed it
    route: Route | None  # None when the proxy refused before routing
    outcome: Outcome
    #: The backend's own words (scrubbed of secrets) or the proxy's reason for refusing.
    detail: str = ""
    #: When, in seconds since the epoch: a float, as the journal keeps it (a datetime made for every
    #: login and turned back into seconds by the journal was a tenth of the journal's cost).
    ts: float = field(default_factory=time.time)


class LoginObserver(Protocol):
    """Told of every login outcome. ``password`` is given only when the backend accepted it.

    Observers must be quick and must not raise: the session waits for them before the relay starts.
    """

    async def login_finished(self, event: LoginEvent, password: Password | None) -> None: ...


@dataclass(slots=True)
class Leg:
    """One side of a proxied session after login, as the relay takes it over: its transport, whether
    TLS is on it, what was read ahead of the relay, and how to wait for its close."""

    transport: asyncio.Transport
    tls: bool
    #: The bytes read ahead of the relay, and whether the peer's end of file came behind them: asked
    #: once, when the relay has made the transport its own (nothing is read in between).
    take_rest: Callable[[], tuple[bytes, bool]]
    #: Waits until the connection is closed (once the relay closed it, or the peer did).
    wait_closed: Callable[[], Awaitable[None]]
    #: What the client is told when the proxy ends the session (a switch's grace period ran out): the
    #: relay writes it itself once it has taken the connection over.
    farewell: bytes = b""

    @classmethod
    def of_streams(
        cls, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, tls: bool, farewell: bytes = b""
    ) -> Leg:
        """A connection held by asyncio's streams (SMTP's, a STARTTLS backend's)."""
        transport: asyncio.Transport = writer.transport  # type: ignore[assignment]  # a stream's reads too
        return cls(transport, tls, functools.partial(_streams_rest, reader), writer.wait_closed, farewell)


def _streams_rest(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    """Whatever ``reader`` holds, taken at once, and whether it had met its end of file. It is never fed
    again (its end of file is fed, as a ``read()`` to the end would leave it). StreamReader's public way,
    ``feed_eof()`` then ``read()``, costs three coroutines a leg for what is nearly always nothing."""
    ended = bool(getattr(reader, "_eof", False))  # no public way to tell an end of file it saw
    reader.feed_eof()
    if reader.exception() is not None:  # a stream that failed holds nothing worth sending
        return b"", ended
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    data = bytes(buffer)
    buffer.clear()
    return data, ended


@dataclass(frozen=True, slots=True)
class RelayResult:
    client_to_backend: int  # bytes
    backend_to_client: int
    #: Who ended the session: "client", "backend", "proxy" (a switch's grace period ran out) or "error".
    ended_by: str


#: Pipes a logged-in session both ways until either side closes, or ``stop`` is set (then closes both).
Relay = Callable[[Leg, Leg, asyncio.Event], Awaitable[RelayResult]]
