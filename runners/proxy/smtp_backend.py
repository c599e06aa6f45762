"""The proxy as an SMTP client of one backend: connect, greet, STARTTLS, AUTH, commands.

TLS to a backend is verified (its CA file, or the system's); plain SMTP only to a loopback backend,
the plan's rule, checked here again because a backend's address can come from a directory. Every
failure to reach or understand the backend is one ``BackendUnavailable`` with words safe to show
(``backend_connect``'s: the one class of every backend of the proxy).

A submission login (``log_in``) runs in the connection's callbacks (``backend_connect.open_leg``):
greeting, EHLO and AUTH are one wait for the session, not a stream read and a timer per reply, and the
relay takes the transport as it is (no streams made); a STARTTLS backend is carried on the streams from
its ``220`` to the end of the login.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from runners.connectors.tls import client_context
from runners.proxy.addresses import is_loopback
from runners.proxy.backend_connect import (
    BackendTls,
    BackendUnavailable,
    open_dialogue,
    open_leg,
    run_steps,
    start_tls,
    unconnected,
)
from runners.proxy.contracts import BackendEndpoint, Leg, TlsMode
from runners.proxy.smtp_io import (
    MAX_REPLY_LINE,
    MAX_REPLY_LINES,
    MalformedReply,
    Reply,
    discard_buffered,
    read_reply,
)
from runners.proxy.smtp_parse import encode, encode_b64
from runners.safe_text import MASK, safe


@functools.lru_cache(maxsize=32)
def backend_tls_context(ca_file: str | None, verify: bool) -> ssl.SSLContext:
    """One context per (CA, verify): loading a CA bundle costs more than a whole login."""
    return client_context(ca_file, verify)


@dataclass(slots=True)
class BackendSession:
    """An open SMTP session with a backend, after EHLO (and STARTTLS where the endpoint says so)."""

    endpoint: BackendEndpoint
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    tls: bool
    #: The EHLO keywords in capitals, each with its parameters (``SIZE`` → ``("52428800",)``).
    extensions: dict[str, tuple[str, ...]]

    def leg(self) -> Leg:
        return Leg.of_streams(self.reader, self.writer, self.tls)

    async def command(self, line: bytes, timeout: float) -> Reply:
        """Send one command line (CR LF added) and read its reply. Raises ``BackendUnavailable``."""
        try:
            async with asyncio.timeout(timeout):
                self.writer.write(line + b"\r\n")
                await self.writer.drain()
                return await read_reply(self.reader)
        except (OSError, MalformedReply, TimeoutError) as exc:
            raise BackendUnavailable(_why(exc)) from None

    async def read_reply(self, timeout: float) -> Reply:
        try:
            async with asyncio.timeout(timeout):
                return await read_reply(self.reader)
        except (OSError, MalformedReply, TimeoutError) as exc:
            raise BackendUnavailable(_why(exc)) from None

    async def close(self, *, quit_first: bool = True) -> None:
        """QUIT (briefly, best effort) and close."""
        if quit_first and not self.writer.is_closing():
            with contextlib.suppress(BackendUnavailable):
                await self.command(b"QUIT", 0.5)
        self.writer.close()
        with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(0.5):
                await self.writer.wait_closed()


async def open_session(endpoint: BackendEndpoint, helo: str, timeout: float) -> BackendSession:
    """Connect, read the greeting, EHLO, STARTTLS where the endpoint says so: all within ``timeout``."""
    if endpoint.tls is TlsMode.NONE and not is_loopback(endpoint.host):
        raise BackendUnavailable(
            f"plain SMTP to {safe(endpoint.host)} refused: only loopback backends may be plain"
        )
    context = backend_tls_context(endpoint.ca_file, endpoint.tls_verify)
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            implicit = endpoint.tls is TlsMode.IMPLICIT
            reader, writer = await asyncio.open_connection(
                endpoint.host, endpoint.port, ssl=context if implicit else None,
                server_hostname=endpoint.host if implicit else None,
            )  # fmt: skip
            greeting = await read_reply(reader)
            if greeting.code != 220:
                raise BackendUnavailable(f"greeting {greeting.code} {safe(greeting.text)}")
            session = BackendSession(endpoint, reader, writer, implicit, {})
            await _ehlo(session, helo)
            if endpoint.tls is TlsMode.STARTTLS:
                await _starttls(session, context, helo)
            return session
    except BackendUnavailable:
        _abort(writer)
        raise
    except (OSError, MalformedReply, TimeoutError) as exc:
        _abort(writer)
        raise BackendUnavailable(_why(exc)) from None


async def _ehlo(session: BackendSession, helo: str) -> None:
    session.writer.write(f"EHLO {helo}\r\n".encode())
    await session.writer.drain()
    answer = await read_reply(session.reader)
    if answer.code != 250:
        raise BackendUnavailable(f"EHLO answered {answer.code} {safe(answer.text)}")
    session.extensions = _extensions(answer)


def _extensions(answer: Reply) -> dict[str, tuple[str, ...]]:
    """EHLO's keywords in capitals, each with its parameters."""
    extensions: dict[str, tuple[str, ...]] = {}
    for line in answer.lines[1:]:  # the first line is the server's name
        words = line.split()
        if words:
            extensions[words[0].upper()] = tuple(words[1:])
    return extensions


async def _starttls(session: BackendSession, context: ssl.SSLContext, helo: str) -> None:
    if "STARTTLS" not in session.extensions:
        raise BackendUnavailable("the backend does not offer STARTTLS")
    session.writer.write(b"STARTTLS\r\n")
    await session.writer.drain()
    answer = await read_reply(session.reader)
    if answer.code != 220:
        raise BackendUnavailable(f"STARTTLS answered {answer.code} {safe(answer.text)}")
    discard_buffered(session.reader)  # nothing the backend sent in clear counts inside TLS
    await session.writer.start_tls(context, server_hostname=session.endpoint.host)
    session.tls = True
    await _ehlo(session, helo)


class _Contexts(BackendTls):
    """``backend_tls_context``'s contexts, for ``open_dialogue``."""

    def context(self, endpoint: BackendEndpoint) -> ssl.SSLContext:
        return backend_tls_context(endpoint.ca_file, endpoint.tls_verify)


_CONTEXTS = _Contexts()
#: What a login's connection can fail with, besides ``BackendUnavailable`` (its words: ``_why``).
_LOGIN_ERRORS = (OSError, ValueError, MalformedReply, asyncio.IncompleteReadError, asyncio.LimitOverrunError)


@dataclass(slots=True)
class LoggedIn:
    """A submission backend's connection after its login dialogue: the relay's ``leg`` (no streams
    made for a plain or implicit-TLS backend), or closed with ``close`` when the login failed."""

    leg: Leg
    #: The EHLO keywords in capitals, each with its parameters (``SIZE`` → ``("52428800",)``); read-only.
    extensions: Mapping[str, tuple[str, ...]]

    @property
    def tls(self) -> bool:
        return self.leg.tls

    async def close(self, *, quit_first: bool = True) -> None:
        """QUIT (without waiting for its answer: the login is over either way) and close, within 0.5 s."""
        transport = self.leg.transport
        if quit_first and not transport.is_closing():
            transport.write(b"QUIT\r\n")
        transport.close()  # what was written goes out first
        with contextlib.suppress(OSError, TimeoutError, asyncio.CancelledError):
            async with asyncio.timeout(0.5):
                await self.leg.wait_closed()


async def log_in(endpoint: BackendEndpoint, helo: str, login: str, password: str) -> tuple[Reply, LoggedIn]:
    """Connect, greet, EHLO, STARTTLS where the endpoint says so, AUTH as ``login`` (``SubmissionLogin``):
    the backend's final reply (scrubbed) and the connection, open whatever the reply (close it unless
    it is ``235``). Raises ``BackendUnavailable``; the caller keeps the time (a cancellation aborts
    the connection)."""
    if endpoint.tls is TlsMode.NONE and not is_loopback(endpoint.host):
        raise BackendUnavailable(
            f"plain SMTP to {safe(endpoint.host)} refused: only loopback backends may be plain"
        )
    steps = SubmissionLogin(helo, login, password, starttls=endpoint.tls is TlsMode.STARTTLS)
    if endpoint.tls is not TlsMode.STARTTLS:
        try:
            leg = await open_leg(endpoint, _CONTEXTS, steps)
        except _LOGIN_ERRORS as exc:  # open_leg's own BackendUnavailable goes up as it is
            raise BackendUnavailable(_why(exc)) from None
        answer = steps.answer
        assert answer is not None
        return answer, LoggedIn(leg, steps.extensions)
    try:
        reader, writer = await open_dialogue(endpoint, _CONTEXTS, steps)
    except _LOGIN_ERRORS as exc:
        raise BackendUnavailable(_why(exc)) from None
    # The backend said 220 to STARTTLS: the rest inside TLS, on the streams.
    try:
        await start_tls(reader, writer, _CONTEXTS.context(endpoint), endpoint.host)
        steps.resume(writer.write)
        await run_steps(reader, steps)
    except BaseException as exc:
        writer.transport.abort()
        if isinstance(exc, _LOGIN_ERRORS):
            raise BackendUnavailable(_why(exc)) from None
        raise
    answer = steps.answer
    assert answer is not None
    return answer, LoggedIn(Leg.of_streams(reader, writer, True), steps.extensions)


class SubmissionLogin:
    """A submission backend's login as ``backend_connect.LineSteps``, one reply line at a time: the
    greeting, EHLO, STARTTLS when ``starttls`` (then the dialogue stops at its ``220``: the caller turns
    TLS on and calls ``resume``), EHLO again, AUTH PLAIN (or LOGIN when the backend offers only that).
    ``answer`` is the backend's final reply to AUTH, scrubbed of the password and every blob sent;
    ``extensions`` its EHLO keywords. Raises ``BackendUnavailable`` or ``MalformedReply``."""

    __slots__ = ("_blobs", "_helo", "_lines", "_login", "_mechanism", "_password", "_secrets", "_starttls",
                 "_state", "answer", "extensions", "write")  # fmt: skip

    def __init__(self, helo: str, login: str, password: str, *, starttls: bool) -> None:
        self._helo, self._login, self._password = helo, login, password
        self._starttls = starttls
        self._state = "greeting"
        self._lines: list[bytes] = []  # the reply's lines so far, as received (line ends stripped)
        self._blobs: list[str] = []  # AUTH LOGIN's answers to its 334s, in order
        self._secrets: tuple[str, ...] = ()
        self._mechanism: str | None = None
        self.answer: Reply | None = None
        self.extensions: Mapping[str, tuple[str, ...]] = {}
        self.write: Callable[[bytes], None] = unconnected

    def _malformed(self, text: str) -> MalformedReply:
        """What a line that is no SMTP reply says, with the password and its blobs masked before it
        is cut (a backend may echo what it got after AUTH, and the words reach logs and the store)."""
        return MalformedReply(
            f"not an SMTP reply: {scrubbed(Reply(0, (text,)), self._secrets).lines[0][:80]}"
        )

    def step(self, line: bytes) -> bool:
        if len(line) > _LONGEST_LINE:
            raise self._malformed(line.decode("utf-8", "replace"))
        lines = self._lines
        lines.append(line)
        # A continuation line is only kept: the whole reply is checked once its last line came (an
        # EHLO answer is most of a login's lines, and a backend sends the same one every time).
        if line[3:4] == b"-":
            if len(lines) >= MAX_REPLY_LINES:
                raise MalformedReply("a reply of more than 100 lines")
            return False
        received = tuple(lines)
        lines.clear()
        state = self._state
        if state == "ehlo":
            return self._ehlo_answered(received)
        if state == "greeting" and len(received) == 1 and (line[:4] == b"220 " or line == b"220"):
            self._ehlo()  # the usual one-line greeting: nothing of it is kept
            return False
        return self._answered(self._reply(received))

    def _reply(self, received: tuple[bytes, ...]) -> Reply:
        """The reply those lines make (the code is the last line's). Raises ``MalformedReply``."""
        texts = []
        code = ""
        for line in received:
            text = line.decode("utf-8", "replace")
            code, sep = text[:3], text[3:4]
            if not code.isdigit() or sep not in ("-", " ", ""):
                raise self._malformed(text)
            texts.append(text[4:])
        return Reply(int(code), tuple(texts))

    def resume(self, write: Callable[[bytes], None]) -> None:
        """TLS is on (after ``220`` to STARTTLS): EHLO again, through ``write``."""
        self.write = write
        self._starttls = False
        self._ehlo()

    def _ehlo(self) -> None:
        self.write(f"EHLO {self._helo}\r\n".encode())
        self._state = "ehlo"

    def _ehlo_answered(self, received: tuple[bytes, ...]) -> bool:
        # The keywords and the AUTH mechanism to use are worked out once per distinct answer (its
        # first line, the backend's name and maybe the client's, is left out of the key but checked).
        key = b"\n".join(received[1:])  # b"" for a one-line answer: never kept (its code is its first line's)
        known = _EHLO_ANSWERS.get(key) if key else None
        if known is None:
            reply = self._reply(received)
            if reply.code != 250:
                raise BackendUnavailable(f"EHLO answered {reply.code} {safe(reply.text)}")
            known = _ehlo_answer(reply)
            if key and len(key) <= _KEPT_ANSWER_BYTES:
                if len(_EHLO_ANSWERS) >= _KEPT_ANSWERS:
                    _EHLO_ANSWERS.clear()
                _EHLO_ANSWERS[key] = known
        else:
            self._reply(received[:1])  # the first line is no part of the key: still an SMTP line?
        self.extensions, self._mechanism = known
        if self._starttls:
            if "STARTTLS" not in self.extensions:
                raise BackendUnavailable("the backend does not offer STARTTLS")
            self.write(b"STARTTLS\r\n")
            self._state = "starttls"
            return False
        self._auth()
        return False

    def _answered(self, reply: Reply) -> bool:
        state = self._state
        if state == "greeting":
            if reply.code != 220:
                raise BackendUnavailable(f"greeting {reply.code} {safe(reply.text)}")
            self._ehlo()
            return False
        if state == "starttls":
            if reply.code != 220:
                raise BackendUnavailable(f"STARTTLS answered {reply.code} {safe(reply.text)}")
            self._state = "tls"
            return True  # nothing more in clear: the caller turns TLS on and resumes
        if state == "login" and reply.code == 334 and self._blobs:
            self.write(self._blobs.pop(0).encode() + b"\r\n")
            return False
        self.answer = scrubbed(reply, self._secrets)
        self._state = "done"
        return True

    def _auth(self) -> None:
        login, password = self._login, self._password
        mechanism = self._mechanism
        if mechanism == "PLAIN":
            blob = encode_b64(f"\0{login}\0{password}")
            self._secrets = (password, blob)
            self.write(f"AUTH PLAIN {blob}\r\n".encode())
            self._state = "auth"
        elif mechanism == "LOGIN":
            self._blobs = [encode_b64(login), encode_b64(password)]
            self._secrets = (password, self._blobs[1])
            self.write(b"AUTH LOGIN\r\n")
            self._state = "login"
        else:
            raise BackendUnavailable("the backend offers neither AUTH PLAIN nor AUTH LOGIN")


#: A reply line longer than this (its CR LF not counted) is no SMTP server talking (as ``read_reply``).
_LONGEST_LINE = MAX_REPLY_LINE - 2
#: EHLO answers already worked out: keywords and AUTH mechanism by the answer's lines after the first.
#: A backend answers every session alike, so this holds a few entries; bounded all the same.
_EHLO_ANSWERS: dict[bytes, tuple[Mapping[str, tuple[str, ...]], str | None]] = {}
_KEPT_ANSWERS = 64
_KEPT_ANSWER_BYTES = 4096


def _ehlo_answer(reply: Reply) -> tuple[Mapping[str, tuple[str, ...]], str | None]:
    """An EHLO answer's keywords (read-only: shared by the sessions that got the same answer) and the
    AUTH mechanism the proxy uses with it: PLAIN when offered, else LOGIN, else None."""
    extensions = _extensions(reply)
    mechanisms = {m.upper() for m in extensions.get("AUTH", ())}
    mechanism = "PLAIN" if "PLAIN" in mechanisms else "LOGIN" if "LOGIN" in mechanisms else None
    return extensions, mechanism


def scrubbed(answer: Reply, secrets: Iterable[str]) -> Reply:
    """``answer`` with each secret masked and every line made safe (a backend may echo what it got)."""
    lines = []
    for line in answer.lines:
        for secret in secrets:
            if secret:
                line = line.replace(secret, MASK)
        lines.append(safe(line))
    return Reply(answer.code, tuple(lines))


def _why(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer in time"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "a reply line too long"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted: {safe(exc.verify_message or exc)}"
    return safe(str(exc) or type(exc).__name__)


def _abort(writer: asyncio.StreamWriter | None) -> None:
    if writer is not None:
        writer.transport.abort()


def mail_from(session: BackendSession, sender: str, body: str | None, size: int | None) -> bytes:
    """``MAIL FROM:<sender>`` with the BODY and SIZE parameters the backend announced it understands."""
    params = ""
    if body is not None and "8BITMIME" in session.extensions:
        params += f" BODY={body}"
    if size is not None and "SIZE" in session.extensions:
        params += f" SIZE={size}"
    return encode(f"MAIL FROM:<{sender}>{params}")
