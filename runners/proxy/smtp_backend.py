"""The proxy as an SMTP client of one backend: connect, greet, STARTTLS, AUTH, commands.

TLS to a backend is verified (its CA file, or the system's); plain SMTP only to a loopback backend,
the plan's rule, checked here again because a backend's address can come from a directory. Every
failure to reach or understand the backend is one ``BackendUnavailable`` with words safe to show.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

from runners.connectors.tls import client_context
from runners.proxy.contracts import BackendEndpoint, Leg, TlsMode
from runners.proxy.smtp_io import MalformedReply, Reply, discard_buffered, read_reply
from runners.proxy.smtp_parse import encode, encode_b64
from runners.safe_text import MASK, safe


class BackendUnavailable(Exception):
    """The backend could not be reached, was too slow, or did not speak SMTP as expected."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


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

    @property
    def auth_mechanisms(self) -> tuple[str, ...]:
        return tuple(m.upper() for m in self.extensions.get("AUTH", ()))

    def leg(self) -> Leg:
        return Leg(self.reader, self.writer, self.tls)

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
    extensions: dict[str, tuple[str, ...]] = {}
    for line in answer.lines[1:]:  # the first line is the server's name
        words = line.split()
        if words:
            extensions[words[0].upper()] = tuple(words[1:])
    session.extensions = extensions


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


async def authenticate(session: BackendSession, login: str, password: str, timeout: float) -> Reply:
    """AUTH PLAIN (or LOGIN when the backend offers only that) as ``login``; the backend's final reply.

    The reply's text is scrubbed of the password and of every base64 blob sent. Raises
    ``BackendUnavailable`` when the backend offers neither mechanism or doesn't answer in time.
    """
    mechanisms = session.auth_mechanisms
    if "PLAIN" in mechanisms:
        blob = encode_b64(f"\0{login}\0{password}")
        answer = await session.command(f"AUTH PLAIN {blob}".encode(), timeout)
        return scrubbed(answer, (password, blob))
    if "LOGIN" in mechanisms:
        user_blob, password_blob = encode_b64(login), encode_b64(password)
        answer = await session.command(b"AUTH LOGIN", timeout)
        for blob in (user_blob, password_blob):
            if answer.code != 334:
                break
            answer = await session.command(blob.encode(), timeout)
        return scrubbed(answer, (password, password_blob))
    raise BackendUnavailable("the backend offers neither AUTH PLAIN nor AUTH LOGIN")


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
