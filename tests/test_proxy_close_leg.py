"""``close_leg``: a backend's connection that will not be relayed is closed and waited for, but a
cancel of the session (the proxy shutting down) is never swallowed while it waits."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from servers.tlsca import ThrowawayCA

from runners.proxy.contracts import Leg
from runners.proxy.session_common import close_leg


@pytest.fixture()
def mute_tls_backend(tmp_path: Path) -> Iterator[tuple[int, ssl.SSLContext]]:
    """A TLS server that completes the handshake, then neither reads nor answers a close_notify: a
    client's close waits on it (asyncio waits up to 30 s for the peer's close_notify)."""
    ca = ThrowawayCA(tmp_path)
    leaf = ca.issue("localhost", days=30)
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(leaf.cert, leaf.key)
    client_context = ssl.create_default_context(cafile=str(ca.ca_file))
    listener = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    done = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        tls = server_context.wrap_socket(conn, server_side=True)
        held.append(tls)
        done.wait(10)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], client_context
    finally:
        done.set()
        thread.join(5)
        for sock in held:
            sock.close()
        listener.close()


def test_a_cancel_while_waiting_for_the_close_reaches_the_session(
    mute_tls_backend: tuple[int, ssl.SSLContext],
) -> None:
    port, context = mute_tls_backend

    async def main() -> tuple[bool, float]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=context, server_hostname="localhost"
        )
        leg = Leg.of_streams(reader, writer, tls=True)
        task = asyncio.create_task(close_leg(leg))
        await asyncio.sleep(0.3)
        assert not task.done(), "the close should still wait for the mute peer's close_notify"
        started = asyncio.get_running_loop().time()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(asyncio.shield(task), 5)
        writer.transport.abort()
        return task.cancelled(), asyncio.get_running_loop().time() - started

    cancelled, seconds = asyncio.run(main())
    assert cancelled
    assert seconds < 5
