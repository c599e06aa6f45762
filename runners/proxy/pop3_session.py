"""One POP3 client of the proxy, from its greeting to its login on the backend its route names; then
the relay.

Before login: CAPA, USER/PASS, AUTH PLAIN (with an initial response too, RFC 5034), STLS, QUIT.
The backend is logged in with ``AUTH PLAIN`` and its initial response (RFC 5034: one round trip where
USER and PASS take two) where its CAPA lists ``SASL ... PLAIN``, else with USER and PASS (every POP3
server has them), after STLS when its endpoint says so. CAPA is asked once per backend (host and port)
and process. The client gets the backend's own ``+OK`` line.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Coroutine

from runners.proxy.backend_connect import (
    BackendTls,
    BackendUnavailable,
    LineSteps,
    backend_line,
    login_dialogue,
    start_tls,
    unconnected,
    where,
)
from runners.proxy.client_conn import ClientConn, ClientGone, LineTooLong
from runners.proxy.context import ProxyContext
from runners.proxy.contracts import (
    ACCEPTED,
    BLOCKED,
    REJECTED,
    UNAVAILABLE,
    BackendEndpoint,
    Leg,
    Password,
    Route,
    Service,
)
from runners.proxy.sasl import SaslError, decode, plain_credentials, plain_response
from runners.proxy.session_common import (
    BACKEND_ERRORS,
    ClientSession,
    clear_login_refused,
    close_leg,
    endpoint_of,
    event,
    serve_login,
    unavailable_detail,
    words,
)

MAX_BAD_COMMANDS = 10
#: The commands ``_quick`` answers (a line whose first four bytes are ASCII and none of these is not).
_QUICK = (b"CAPA", b"USER")
#: What a USER or PASS line sent to the backend must not hold.
_LINE_BREAK = re.compile("[\r\n\0]")
#: Named once: a member looked up on its class costs ~1.4 k instructions (``contracts.ACCEPTED``).
_POP3 = Service.POP3


class _Closed(Exception):
    """The client went away."""


class _TooLong(Exception):
    pass


class Pop3Session(ClientSession):
    __slots__ = ("user",)

    def __init__(self, ctx: ProxyContext, conn: ClientConn, tls: bool) -> None:
        super().__init__(ctx, conn, tls)
        self.user: str | None = None  # USER given, PASS awaited (forgotten on STLS, RFC 2595)

    def run(self) -> Coroutine[None, None, None]:
        # The coroutine itself, not one awaiting it: each resume of a session passes every frame.
        return serve_login(
            self,
            _POP3,
            self._until_logged_in,
            busy=b"-ERR [SYS/TEMP] Too many connections from your address.\r\n",
            greeting=lambda: b"+OK Cutover proxy ready.\r\n",
            idle=b"-ERR Disconnected for inactivity.\r\n",
            closed=_Closed,
        )

    def _capabilities(self) -> bytes:
        lines = [b"+OK Capability list follows", b"CAPA", b"RESP-CODES", b"AUTH-RESP-CODE"]
        if not clear_login_refused(self.ctx, self.tls, self.address):
            lines[2:2] = [b"USER", b"SASL PLAIN"]
        if self.ctx.client_tls is not None and not self.tls:
            lines.append(b"STLS")
        lines.append(b".")
        return b"\r\n".join(lines) + b"\r\n"

    async def _read_line(self, *, command: bool = False) -> bytes:
        """The client's next line, its line end kept; a command (``command``) the session would only
        answer (``_quick``) is answered on the way, in the connection's callback when it comes later."""
        conn = self.conn
        try:
            while (line := conn.next_line()) is None or (command and self._quick(line)):
                if line is None:
                    conn.quick = self._quick if command else None
                    try:
                        await conn.wait()
                    finally:
                        conn.quick = None
        except ClientGone:
            raise _Closed from None
        except LineTooLong:
            raise _TooLong from None
        if len(line) > self.ctx.options.limits.max_line_bytes + 2:
            raise _TooLong
        return line

    def _quick(self, line: bytes) -> bool:
        """Answer ``CAPA`` or ``USER`` (with a name, where a login in clear is allowed) at once: True;
        False for every other line, which the session's loop answers."""
        head = line[:4]
        if head.isascii() and head.upper() not in _QUICK:  # PASS, AUTH, QUIT...: not decoded twice
            return False
        if len(line) > self.ctx.options.limits.max_line_bytes + 2:
            return False
        text = line.decode("utf-8", "surrogateescape")
        name, _, argument = (text[:-2] if text.endswith("\r\n") else text[:-1]).partition(" ")
        name = name.upper()
        if name == "CAPA":
            self.write(self._capabilities())
            return True
        if name == "USER" and argument.strip() and not clear_login_refused(self.ctx, self.tls, self.address):
            self.user = argument.strip()
            self.write(b"+OK\r\n")
            return True
        return False

    async def _until_logged_in(self) -> tuple[Route, Leg] | None:
        while True:
            write = self.write  # STLS changes it
            try:
                line = await self._read_line(command=True)
            except _TooLong:
                write(b"-ERR Too long command line.\r\n")
                return None
            text = line.decode("utf-8", "surrogateescape")
            text = text[:-2] if text.endswith("\r\n") else text[:-1]
            name, _, argument = text.partition(" ")
            name = name.upper()
            if name == "QUIT":
                write(b"+OK Logging out.\r\n")
                return None
            elif name == "STLS":
                if await self._stls():
                    self.user = None  # RFC 2595: forget what was said in clear
            elif name in ("USER", "PASS", "AUTH") and clear_login_refused(self.ctx, self.tls, self.address):
                write(b"-ERR [AUTH] Plaintext authentication disallowed on non-secure connections.\r\n")
            elif name == "PASS":
                if self.user is None:
                    self._bad(b"No username given.")
                    continue
                login, self.user = self.user, None
                done = await self._login(login, Password(argument))
                if done is not None:
                    return done
            elif name == "AUTH":
                credentials = await self._auth(argument.strip())
                if credentials is not None:
                    done = await self._login(credentials[0], Password(credentials[1]))
                    if done is not None:
                        return done
            elif self._bad(b"Unknown command, or not valid before login."):
                return None

    def _bad(self, text: bytes) -> bool:
        self.bad += 1
        if self.bad >= MAX_BAD_COMMANDS:
            self.write(b"-ERR Too many invalid commands.\r\n")
            return True
        self.write(b"-ERR " + text + b"\r\n")
        return False

    async def _stls(self) -> bool:
        """TLS on, if the plan offers it and it isn't on yet; whether it was turned on."""
        context = self.ctx.client_tls
        if context is None or self.tls:
            self._bad(b"TLS is already active." if self.tls else b"STLS is not available.")
            return False
        self.write(b"+OK Begin TLS negotiation now.\r\n")
        await self.start_tls(context)
        return True

    async def _auth(self, argument: str) -> tuple[str, str] | None:
        if not argument:
            self.write(b"+OK\r\nPLAIN\r\n.\r\n")
            return None
        mechanism, _, initial = argument.partition(" ")
        if mechanism.upper() != "PLAIN":
            self.write(b"-ERR Unsupported authentication mechanism.\r\n")
            return None
        try:
            if initial.strip():
                data = decode(initial.strip())
            else:
                self.write(b"+ \r\n")
                line = (await self._read_line()).strip()
                if line == b"*":
                    self.write(b"-ERR Authentication aborted.\r\n")
                    return None
                data = decode(line.decode("ascii", "replace"))
            return plain_credentials(data)
        except _TooLong:
            self.write(b"-ERR Too long response.\r\n")
        except SaslError as exc:
            self._bad(f"{exc}.".capitalize().encode())
        return None

    async def _login(self, login: str, password: Password) -> tuple[Route, Leg] | None:
        ctx, address, write = self.ctx, self.address, self.write
        if not login or _LINE_BREAK.search(login) or _LINE_BREAK.search(password.reveal()):
            write(b"-ERR [AUTH] Authentication failed.\r\n")
            return None
        if ctx.limits.locked(address, login):
            write(b"-ERR [SYS/TEMP] Too many failed logins; try again later.\r\n")
            await ctx.tell(event(_POP3, address, login, None, BLOCKED, "locked out after failed logins"))
            return None
        route = await ctx.router.route_user(login)
        endpoint: BackendEndpoint | None = None
        backend: Leg | None = None
        task = self.task
        deadlines = ctx.deadlines
        try:
            endpoint = endpoint_of(ctx, route, _POP3)
            steps = _BackendLogin(
                route.backend_login, password, endpoint, functools.partial(deadlines.backend_greeted, task)
            )
            backend = await deadlines.within_backend(
                task, login_dialogue(endpoint, ctx.backend_tls, steps, _starttls)
            )
            ok, answer = steps.ok, steps.answer
        except BACKEND_ERRORS as exc:
            await close_leg(backend)
            write(b"-ERR [SYS/TEMP] Backend server unavailable; try again later.\r\n")
            detail = unavailable_detail(route, endpoint, exc)
            await ctx.tell(event(_POP3, address, login, route, UNAVAILABLE, detail))
            return None
        said = words(answer.decode("utf-8", "replace"), password) if not ok or ctx.observers else ""
        if not ok:
            await close_leg(backend)
            delay = ctx.limits.failed(address, login)
            if delay:
                await asyncio.sleep(delay)
            reply = said if said.startswith("-ERR") else f"-ERR [AUTH] {said}"
            write(reply.encode() + b"\r\n")
            await ctx.tell(event(_POP3, address, login, route, REJECTED, said))
            return None
        ctx.limits.succeeded(address, login)
        write(answer + b"\r\n")
        if ctx.observers:
            await ctx.tell(event(_POP3, address, login, route, ACCEPTED, said), password)
        return route, backend


async def _starttls(
    endpoint: BackendEndpoint,
    tls: BackendTls,
    steps: LineSteps,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """A STLS backend's greeting and upgrade, then the login ``steps`` begun."""
    assert isinstance(steps, _BackendLogin)
    greeting = await backend_line(reader)
    if not greeting.startswith(b"+OK"):
        raise BackendUnavailable(f"{where(endpoint)} greeted with {greeting[:200]!r}")
    writer.write(b"STLS\r\n")
    answer = await backend_line(reader)
    if not answer.startswith(b"+OK"):
        raise BackendUnavailable(f"{where(endpoint)} refused STLS: {answer[:200]!r}")
    await start_tls(reader, writer, tls.context(endpoint), endpoint.host)
    steps.begin()


#: How each backend (host, port) is logged in, from its CAPA (asked at its first login in this process):
#: True for ``AUTH PLAIN``, False for USER and PASS. Never guessed from a refusal: a legacy server
#: that has SASL may refuse a password without a response code, and a second try with USER and PASS
#: would count two failures against the user there (an account lock-out policy counts each).
_PLAIN_LOGIN: dict[tuple[str, int], bool] = {}
#: The longest initial response an AUTH command may carry (255 octets with ``AUTH PLAIN `` and CRLF).
_MAX_INITIAL = 255 - len(b"AUTH PLAIN \r\n")


class _BackendLogin:
    """The login on a POP3 backend, one backend line at a time (``backend_connect.LineSteps``): the
    greeting, CAPA at a backend's first login, then ``AUTH PLAIN`` with its initial response (RFC 5034:
    one round trip) where CAPA lists it, or USER then PASS. ``ok`` and ``answer`` (the backend's last
    line) are the outcome. ``greeted`` is told once the backend greeted."""

    __slots__ = ("answer", "endpoint", "greeted", "login", "ok", "password", "plain", "state", "write")

    def __init__(
        self, login: str, password: Password, endpoint: BackendEndpoint, greeted: Callable[[], None]
    ) -> None:
        self.login, self.password, self.endpoint = login, password, endpoint
        self.greeted = greeted  # the backend's login deadline starts
        self.state = "greeting"
        self.ok = False
        self.plain = False  # CAPA named SASL PLAIN
        self.answer = b""
        self.write: Callable[[bytes], None] = unconnected

    def step(self, line: bytes) -> bool:
        state = self.state
        if state == "greeting":
            if not line.startswith(b"+OK"):
                raise BackendUnavailable(f"{where(self.endpoint)} greeted with {line[:200]!r}")
            self.begin()
            return False
        if state == "capa" or state == "capa-list":
            return self._capa(line)
        if state[:4] == "auth" and line[:1] == b"+" and not line.startswith(b"+OK"):
            # A continuation: the response where it didn't fit the command (RFC 5034), once; PLAIN
            # has no second challenge, so one is cancelled ("*") and the backend's -ERR is the answer.
            if state == "auth":
                self.write(plain_response(self.login, self.password.reveal()) + b"\r\n")
                self.state = "auth-answered"
            else:
                self.write(b"*\r\n")
            return False
        if state == "user" and line.startswith(b"+OK"):
            self.write(b"PASS " + self.password.reveal().encode("utf-8", "surrogateescape") + b"\r\n")
            self.state = "pass"
            return False
        self.ok = state != "user" and line.startswith(b"+OK")
        self.answer = line
        return True

    def begin(self) -> None:
        """The backend greeted (and TLS is on where its endpoint asks for STLS): log in."""
        self.greeted()
        plain = _PLAIN_LOGIN.get((self.endpoint.host, self.endpoint.port))
        if plain is None:
            self.write(b"CAPA\r\n")
            self.state = "capa"
        elif plain:
            self._auth()
        else:
            self._user()

    def _capa(self, line: bytes) -> bool:
        """One line of the backend's CAPA answer (RFC 2449); at its end, the login."""
        if self.state == "capa":
            if line.startswith(b"+OK"):
                self.state = "capa-list"
                return False
            plain = False  # no CAPA: a server older than RFC 2449
        elif line.rstrip(b"\r\n") != b".":
            words = line.upper().split()
            if words[:1] == [b"SASL"] and b"PLAIN" in words:
                self.plain = True
            return False
        else:
            plain = self.plain
        _PLAIN_LOGIN[(self.endpoint.host, self.endpoint.port)] = plain
        if plain:
            self._auth()
        else:
            self._user()
        return False

    def _auth(self) -> None:
        response = plain_response(self.login, self.password.reveal())
        # RFC 5034: no initial response where the command would pass 255 octets; the continuation then.
        self.write(
            b"AUTH PLAIN " + response + b"\r\n" if len(response) <= _MAX_INITIAL else b"AUTH PLAIN\r\n"
        )
        self.state = "auth"

    def _user(self) -> None:
        self.write(b"USER " + self.login.encode("utf-8", "surrogateescape") + b"\r\n")
        self.state = "user"
