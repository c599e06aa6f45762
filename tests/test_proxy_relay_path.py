"""Which path carried a transfer: bulk on plain legs goes through splice, kernel only; a TLS leg copies.

The splice path is what keeps FETCH at about 0.3 CPU-s per GB (bench/proxy_bench.py); a change that
quietly left every byte on the copy path would still pass the byte-for-byte tests, so this pins it.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from pathlib import Path

import pytest
from servers.tlsca import ThrowawayCA
from test_proxy_relay import BACKEND_AHEAD, Tls, read_all, rig, run

from runners.proxy.relay import bytes_by_path

BULK = 16 * 1024 * 1024


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    ca = ThrowawayCA(Path(tmp_path_factory.mktemp("relay-path-ca")))
    leaf = ca.issue("proxy", days=30)
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(leaf.cert, leaf.key)
    return Tls(server, ssl.create_default_context(cafile=str(ca.ca_file)))


async def fetch_through_relay(tls: Tls, *, client_tls: bool) -> tuple[dict[str, int], dict[str, int]]:
    """A FETCH-sized answer through the relay: (bytes by path before, after)."""
    answer = os.urandom(BULK)

    async def backend(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readline()  # the client's pipelined command
        writer.write(answer)
        await writer.drain()

    before = bytes_by_path()
    async with rig(backend, tls=tls, client_tls=client_tls) as r:
        reader, writer = await r.connect()
        received = await read_all(reader)
        writer.close()
        await asyncio.wait_for(r.results.get(), 60)
    assert received == BACKEND_AHEAD + answer
    return before, bytes_by_path()


@pytest.mark.skipif(not hasattr(os, "splice"), reason="no splice on this system")
def test_bulk_on_plain_legs_goes_through_splice(tls: Tls) -> None:
    async def main() -> None:
        before, after = await fetch_through_relay(tls, client_tls=False)
        spliced = after["splice"] - before["splice"]
        copied = after["copy"] - before["copy"]
        # The first bulk read is copied (it is what triggers the move); everything after it is spliced.
        assert spliced >= BULK - 1024 * 1024
        assert spliced + copied >= BULK

    run(main())


def test_a_tls_leg_keeps_every_byte_on_the_copy_path(tls: Tls) -> None:
    async def main() -> None:
        before, after = await fetch_through_relay(tls, client_tls=True)
        assert after["splice"] == before["splice"]
        assert after["copy"] - before["copy"] >= BULK

    run(main())
