"""A backend on loopback that follows a test's script, for the proxy's backend dialogues: the test's
``check`` runs against its endpoint, then the backend must see the proxy's side close."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

from runners.proxy.contracts import BackendEndpoint, TlsMode

Backend = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def against_scripted_backend(
    backend: Backend,
    check: Callable[[BackendEndpoint], Awaitable[None]],
    *,
    tls: TlsMode = TlsMode.NONE,
    ca_file: Path | None = None,
) -> None:
    async def main() -> None:
        closed = asyncio.Event()

        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await backend(reader, writer)
            finally:
                writer.close()
                closed.set()

        server = await asyncio.start_server(serve, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        endpoint = BackendEndpoint("127.0.0.1", port, tls, ca_file=None if ca_file is None else str(ca_file))
        async with server:
            await check(endpoint)
            await asyncio.wait_for(closed.wait(), 5)  # the proxy's side closed: the backend saw the end

    asyncio.run(main())


async def closed_port() -> int:
    """A loopback port that was listening a moment ago and refuses connections now."""
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port: int = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    return port
