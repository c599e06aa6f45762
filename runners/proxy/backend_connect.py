"""Connecting to a backend: TCP, implicit TLS or STARTTLS verified against the backend's name (plain
only to loopback backends: the plan refuses anything else), all within a short deadline so that a
backend that is down or slow is answered at once (``NO [UNAVAILABLE]``, ``-ERR [SYS/TEMP]``) rather
than after the client's own retries.
"""

from __future__ import annotations

import asyncio
import ssl

from runners.connectors.tls import client_context
from runners.proxy.contracts import BackendEndpoint, TlsMode
from runners.safe_text import safe

#: A backend's lines and literals during login are short; the relay reads by chunks, not lines.
BACKEND_LIMIT = 256 * 1024


class BackendUnavailable(Exception):
    """The backend could not be reached or spoke nonsense; ``detail`` says which, in words."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class BackendTls:
    """One verified client context per (verification, CA file), made once and shared by all sessions."""

    def __init__(self) -> None:
        self._contexts: dict[tuple[bool, str | None], ssl.SSLContext] = {}

    def context(self, endpoint: BackendEndpoint) -> ssl.SSLContext:
        key = (endpoint.tls_verify, endpoint.ca_file)
        context = self._contexts.get(key)
        if context is None:
            context = self._contexts[key] = client_context(endpoint.ca_file, endpoint.tls_verify)
        return context


async def open_backend(
    endpoint: BackendEndpoint, tls: BackendTls
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to ``endpoint`` (TLS already on for implicit TLS). Raises ``BackendUnavailable``."""
    implicit = endpoint.tls == TlsMode.IMPLICIT
    try:
        return await asyncio.open_connection(
            endpoint.host,
            endpoint.port,
            ssl=tls.context(endpoint) if implicit else None,
            server_hostname=endpoint.host if implicit else None,
            limit=BACKEND_LIMIT,
        )
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise BackendUnavailable(f"{where(endpoint)}: {_words(exc)}") from None


async def start_tls(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, context: ssl.SSLContext, host: str | None
) -> None:
    """Turn TLS on over a connection, first discarding whatever the peer sent before the handshake
    (the STARTTLS injection: commands or responses pipelined in clear behind the STARTTLS exchange)."""
    await writer.drain()
    # No await between here and start_tls pausing the transport: nothing can slip in between.
    discard_buffered(reader)
    await writer.start_tls(context, server_hostname=host)


def discard_buffered(reader: asyncio.StreamReader) -> int:
    """Drop the bytes ``reader`` holds unread; how many there were. StreamReader has no public way."""
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    count = len(buffer)
    buffer.clear()
    return count


def where(endpoint: BackendEndpoint) -> str:
    return f"{endpoint.host}:{endpoint.port}"


def _words(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate not trusted ({exc.verify_message})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, OSError) and exc.strerror:
        return safe(exc.strerror)
    return safe(exc) or type(exc).__name__
