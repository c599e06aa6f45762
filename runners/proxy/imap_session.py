"""One IMAP client of the proxy, from its greeting to its login on the backend its route names; then
the relay.

Before login the proxy speaks for itself: CAPABILITY, NOOP, ID, LOGOUT, STARTTLS, LOGIN and
AUTHENTICATE PLAIN or LOGIN (SASL-IR too). Its pre-login capabilities are those both the proxy and
any IMAP4rev1 backend support for a login (``IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN``,
with ``STARTTLS`` until TLS is on when the plan gives a certificate); a client learns the backend's
own capabilities from the ``[CAPABILITY ...]`` code of the tagged OK that ends its login (RFC 3501
7.1), which is the backend's post-login list, asked for when the backend's OK didn't carry it.

Towards the backend the proxy logs in with AUTHENTICATE PLAIN (SASL-IR when the backend offers it,
so one round trip), or LOGIN with quoted strings when it doesn't and both fit in quotes.
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import Callable, Coroutine
from collections.abc import Set as AbstractSet

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
from runners.proxy.client_conn import ClientGone, LineTooLong
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
from runners.proxy.imap_parse import ImapSyntaxError, quotable, quote, tokenize, valid_tag
from runners.proxy.sasl import SaslError, decode, plain_credentials, plain_response, text_of
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

PRE_LOGIN_CAPABILITIES = "IMAP4rev1 SASL-IR LITERAL+ ID AUTH=PLAIN AUTH=LOGIN"
#: Dovecot's rule: this many bad commands before login and the client is disconnected.
MAX_BAD_COMMANDS = 10
#: Named once: a member looked up on its class costs ~1.4 k instructions (``contracts.ACCEPTED``).
_IMAP = Service.IMAP
_CAPABILITY_CODE = re.compile(rb"^\[CAPABILITY ([^\]]*)\]\s*", re.IGNORECASE)
_UNTAGGED_CAPABILITY = re.compile(rb"^\* CAPABILITY (.*)$", re.IGNORECASE)


class _Closed(Exception):
    """The client went away."""


class _TooLong(Exception):
    """A line or literal over the limit before login."""


class ImapSession(ClientSession):
    __slots__ = ()

    def run(self) -> Coroutine[None, None, None]:
        # The coroutine itself, not one awaiting it: each resume of a session passes every frame.
        return serve_login(
            self,
            _IMAP,
            self._until_logged_in,
            busy=b"* BYE [UNAVAILABLE] Too many connections from your address.\r\n",
            greeting=lambda: b"* OK [CAPABILITY " + self._capabilities() + b"] Cutover proxy ready.\r\n",
            idle=b"* BYE Disconnected for inactivity.\r\n",
            closed=_Closed,
        )

    def _capabilities(self) -> bytes:
        if clear_login_refused(self.ctx, self.tls, self.address):
            return b"IMAP4rev1 LITERAL+ ID STARTTLS LOGINDISABLED"
        caps = PRE_LOGIN_CAPABILITIES
        if self.ctx.client_tls is not None and not self.tls:
            caps += " STARTTLS"
        return caps.encode()

    # -- before login --------------------------------------------------------------------------

    async def _until_logged_in(self) -> tuple[Route, Leg] | None:
        try:
            return await self._commands()
        except _TooLong as exc:  # a command line, a literal or an AUTHENTICATE response
            self.write(b"* BYE " + str(exc).encode() + b"\r\n")
            return None

    async def _commands(self) -> tuple[Route, Leg] | None:
        while True:
            write = self.write  # STARTTLS changes it
            try:
                tokens = await self._read_command()
            except ImapSyntaxError:
                if self._bad(b"*", b"Error in IMAP command received by server."):
                    return None
                continue
            if len(tokens) < 2 or not valid_tag(tokens[0]):
                if self._bad(b"*", b"Error in IMAP command received by server."):
                    return None
                continue
            tag, name, args = tokens[0].encode("utf-8", "surrogateescape"), tokens[1].upper(), tokens[2:]
            if name == "CAPABILITY":
                write(b"* CAPABILITY " + self._capabilities() + b"\r\n" + tag + b" OK Pre-login capabilities "
                      b"listed, post-login capabilities have more.\r\n")  # fmt: skip
            elif name == "NOOP":
                write(tag + b" OK NOOP completed.\r\n")
            elif name == "ID":
                write(b'* ID ("name" "cutover-proxy")\r\n' + tag + b" OK ID completed.\r\n")
            elif name == "LOGOUT":
                write(b"* BYE Logging out\r\n" + tag + b" OK Logout completed.\r\n")
                return None
            elif name == "STARTTLS":
                await self._starttls(tag)
            elif name in ("LOGIN", "AUTHENTICATE") and clear_login_refused(self.ctx, self.tls, self.address):
                write(
                    tag
                    + b" NO [PRIVACYREQUIRED] Plaintext authentication disallowed on non-secure connections.\r\n"
                )
            elif name == "LOGIN" and len(args) == 2:
                done = await self._login(tag, args[0], Password(args[1]))
                if done is not None:
                    return done
            elif name == "AUTHENTICATE" and args:
                credentials = await self._authenticate(
                    tag, args[0].upper(), args[1] if len(args) > 1 else None
                )
                if credentials is not None:
                    done = await self._login(tag, credentials[0], Password(credentials[1]))
                    if done is not None:
                        return done
            elif name in ("LOGIN", "AUTHENTICATE"):
                if self._bad(tag, b"Invalid arguments."):
                    return None
            elif self._bad(tag, b"Unknown command, or not valid before login."):
                return None

    def _bad(self, tag: bytes, text: bytes) -> bool:
        """Answer BAD; True when that was one too many and the client is told goodbye."""
        self.bad += 1
        if self.bad >= MAX_BAD_COMMANDS:
            self.write(b"* BYE Too many invalid IMAP commands.\r\n")
            return True
        self.write(tag + b" BAD " + text + b"\r\n")
        return False

    async def _read_line(self) -> bytes:
        conn = self.conn
        try:
            while (line := conn.next_line()) is None:
                await conn.wait()
        except ClientGone:
            raise _Closed from None
        except LineTooLong:
            raise _TooLong("Too long command line.") from None
        if len(line) > self.ctx.options.limits.max_line_bytes + 2:
            raise _TooLong("Too long command line.")
        return line[:-2] if line.endswith(b"\r\n") else line[:-1]

    async def _read_command(self) -> list[str]:
        limits = self.ctx.options.limits
        budget = limits.max_line_bytes + 2 * limits.max_literal_bytes
        tokens: list[str] = []
        while True:
            line = await self._read_line()
            budget -= len(line)
            literal = tokenize(line.decode("utf-8", "surrogateescape"), tokens)
            if literal is None:
                return tokens
            if literal.size > limits.max_literal_bytes or literal.size > budget:
                raise _TooLong("Too long literal before login.")
            if literal.synchronizing:
                self.write(b"+ OK\r\n")
            conn = self.conn
            try:
                while (data := conn.take(literal.size)) is None:
                    await conn.wait(literal.size)
            except ClientGone:
                raise _Closed from None
            budget -= literal.size
            tokens.append(text_of(data))

    async def _starttls(self, tag: bytes) -> None:
        context = self.ctx.client_tls
        if context is None or self.tls:
            self._bad(tag, b"TLS is already active." if self.tls else b"STARTTLS is not available.")
            return
        self.write(tag + b" OK Begin TLS negotiation now.\r\n")
        await self.start_tls(context)

    async def _authenticate(self, tag: bytes, mechanism: str, initial: str | None) -> tuple[str, str] | None:
        """The login and password of an AUTHENTICATE exchange, or None when it was answered already."""
        if mechanism not in ("PLAIN", "LOGIN"):
            self.write(tag + b" NO Unsupported authentication mechanism.\r\n")
            return None
        try:
            if mechanism == "PLAIN":
                data = decode(initial) if initial is not None else await self._continuation(b"")
                return plain_credentials(data)
            login = decode(initial) if initial is not None else await self._continuation(b"VXNlcm5hbWU6")
            password = await self._continuation(b"UGFzc3dvcmQ6")
            return text_of(login), text_of(password)
        except _Aborted:
            self.write(tag + b" BAD Authentication aborted by client.\r\n")
        except SaslError as exc:
            self._bad(tag, f"{exc}.".capitalize().encode())
        return None

    async def _continuation(self, prompt: bytes) -> bytes:
        self.write(b"+ " + prompt + b"\r\n")
        line = (await self._read_line()).strip()
        if line == b"*":
            raise _Aborted
        return decode(line.decode("ascii", "replace"))

    # -- the login on the backend --------------------------------------------------------------

    async def _login(self, tag: bytes, login: str, password: Password) -> tuple[Route, Leg] | None:
        ctx, address, write = self.ctx, self.address, self.write
        if not login:
            write(tag + b" NO [AUTHENTICATIONFAILED] Authentication failed.\r\n")
            return None
        if ctx.limits.locked(address, login):
            write(tag + b" NO [UNAVAILABLE] Too many failed logins; try again later.\r\n")
            await ctx.tell(event(_IMAP, address, login, None, BLOCKED, "locked out after failed logins"))
            return None
        route = await ctx.router.route_user(login)
        endpoint: BackendEndpoint | None = None
        backend: Leg | None = None
        task = self.task
        deadlines = ctx.deadlines
        try:
            endpoint = endpoint_of(ctx, route, _IMAP)
            steps = _BackendLogin(
                route.backend_login, password, endpoint, functools.partial(deadlines.backend_greeted, task)
            )
            backend = await deadlines.within_backend(
                task, login_dialogue(endpoint, ctx.backend_tls, steps, _starttls)
            )
            ok, answer = steps.ok, steps.answer
        except BACKEND_ERRORS as exc:
            await close_leg(backend)
            write(tag + b" NO [UNAVAILABLE] Backend server unavailable; try again later.\r\n")
            detail = unavailable_detail(route, endpoint, exc)
            await ctx.tell(event(_IMAP, address, login, route, UNAVAILABLE, detail))
            return None
        if not ok:
            said = words(answer.decode("utf-8", "replace"), password)
            await close_leg(backend)
            delay = ctx.limits.failed(address, login)
            if delay:
                await asyncio.sleep(delay)
            write(tag + b" NO " + said.encode() + b"\r\n")
            await ctx.tell(event(_IMAP, address, login, route, REJECTED, said))
            return None
        ctx.limits.succeeded(address, login)
        write(tag + b" OK " + answer + b"\r\n")
        if ctx.observers:
            # The journal keeps the backend's words, not its capability list.
            accepted = words(_answer_words(answer), password)
            await ctx.tell(event(_IMAP, address, login, route, ACCEPTED, accepted), password)
        return route, backend


class _Aborted(Exception):
    """The client cancelled an AUTHENTICATE exchange with ``*``."""


def _has_capability_code(answer: bytes) -> bool:
    """Does a tagged answer start with a ``[CAPABILITY ...]`` code (``_CAPABILITY_CODE`` matches)? Asked
    of every login: the pattern's scan of the list cost 1.6 k instructions more (``in`` more still:
    it first tries the bytes as an integer, and builds the TypeError)."""
    return answer[:12].upper() == b"[CAPABILITY " and answer.find(b"]", 12) >= 0


def _answer_words(answer: bytes) -> str:
    """A backend's tagged OK without its ``[CAPABILITY ...]`` code, as text."""
    if len(answer) > 2048:  # not kept: a backend's line may be long, the cache holds 64
        return _CAPABILITY_CODE.sub(b"", answer, count=1).decode("utf-8", "replace")
    return _short_answer_words(answer)


@functools.lru_cache(maxsize=64)
def _short_answer_words(answer: bytes) -> str:
    """``_answer_words``, kept: a backend accepts every login in the same words."""
    return _CAPABILITY_CODE.sub(b"", answer, count=1).decode("utf-8", "replace")


@functools.lru_cache(maxsize=64)
def _greeting_capabilities(greeting: bytes) -> frozenset[str]:
    """The capabilities of a backend's ``* OK [CAPABILITY ...]`` greeting, upper case (kept: a backend
    greets every session with the same line)."""
    match = _CAPABILITY_CODE.match(greeting[4:].lstrip())
    return frozenset(match.group(1).decode("ascii", "replace").upper().split()) if match else frozenset()


async def _starttls(
    endpoint: BackendEndpoint,
    tls: BackendTls,
    steps: LineSteps,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
) -> None:
    """A STARTTLS backend's greeting and upgrade, then the login ``steps`` begun with its capabilities."""
    assert isinstance(steps, _BackendLogin)
    greeting = await backend_line(reader)
    if not greeting.upper().startswith(b"* OK"):
        raise BackendUnavailable(f"{where(endpoint)} greeted with {greeting[:200]!r}")
    capabilities = _greeting_capabilities(greeting)
    writer.write(b"S STARTTLS\r\n")
    while not (line := await backend_line(reader)).startswith(b"S "):
        pass
    if not line[2:].upper().startswith(b"OK"):
        raise BackendUnavailable(f"{where(endpoint)} refused STARTTLS: {line[2:200]!r}")
    await start_tls(reader, writer, tls.context(endpoint), endpoint.host)
    steps.begin(capabilities - {"STARTTLS"})


class _BackendLogin:
    """The login on an IMAP backend, one backend line at a time (``backend_connect.LineSteps``): the
    greeting, then AUTHENTICATE PLAIN (SASL-IR when the backend offers it, so one round trip) or LOGIN
    with quoted strings when it doesn't and both fit in quotes; then, when the tagged OK carries no
    ``[CAPABILITY ...]`` code, the backend's post-login CAPABILITY. ``ok`` and ``answer`` (the tagged
    answer after its status word) are the outcome. ``greeted`` is told once the backend greeted."""

    __slots__ = ("answer", "capabilities", "endpoint", "greeted", "login", "ok", "password", "state",
                 "write")  # fmt: skip

    def __init__(
        self, login: str, password: Password, endpoint: BackendEndpoint, greeted: Callable[[], None]
    ) -> None:
        self.login, self.password, self.endpoint = login, password, endpoint
        self.greeted = greeted  # the backend's login deadline starts
        self.state = "greeting"
        self.ok = False
        self.answer = b""
        self.capabilities = b"IMAP4rev1"
        self.write: Callable[[bytes], None] = unconnected

    def step(self, line: bytes) -> bool:
        state = self.state
        if state == "greeting":
            if not line.upper().startswith(b"* OK"):
                raise BackendUnavailable(f"{where(self.endpoint)} greeted with {line[:200]!r}")
            self.begin(_greeting_capabilities(line))
            return False
        if state == "answer":
            return line.startswith(b"A ") and self._answered(line)
        if state == "continue":
            if line.startswith(b"+"):
                self.write(plain_response(self.login, self.password.reveal()) + b"\r\n")
                self.state = "answer"
                return False
            if line.startswith(b"A "):
                return self._answered(line)
            self.answer = line
            return True
        if match := _UNTAGGED_CAPABILITY.match(line):  # state "capability"
            self.capabilities = match.group(1).strip()
        elif line.startswith(b"C "):
            self.answer = b"[CAPABILITY " + self.capabilities + b"] " + self.answer
            return True
        return False

    def begin(self, capabilities: AbstractSet[str]) -> None:
        """The backend greeted (and TLS is on where its endpoint asks for STARTTLS): log in."""
        self.greeted()
        login, secret = self.login, self.password.reveal()
        if "SASL-IR" in capabilities:
            self.write(b"A AUTHENTICATE PLAIN " + plain_response(login, secret) + b"\r\n")
            self.state = "answer"
        elif quotable(login) and quotable(secret):
            self.write(f"A LOGIN {quote(login)} {quote(secret)}\r\n".encode())
            self.state = "answer"
        else:
            self.write(b"A AUTHENTICATE PLAIN\r\n")
            self.state = "continue"

    def _answered(self, line: bytes) -> bool:
        status, _, self.answer = line[2:].partition(b" ")
        self.ok = status.upper() == b"OK"
        if self.ok and not _has_capability_code(self.answer):
            self.write(b"C CAPABILITY\r\n")
            self.state = "capability"
            return False
        return True
