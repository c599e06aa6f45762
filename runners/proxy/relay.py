"""The transparent pipe between a client and its backend once the backend accepted the login.

A plain copy loop over the two legs' streams; the proxy's listeners call ``relay`` and know nothing of
how the bytes move.
"""

from __future__ import annotations

import asyncio
import contextlib

from runners.proxy.contracts import Leg, RelayResult

_CHUNK = 64 * 1024


async def relay(client: Leg, backend: Leg, stop: asyncio.Event) -> RelayResult:
    """Copy both ways until one side closes or ``stop`` is set; then close both legs."""
    up = asyncio.create_task(_copy(client, backend))
    down = asyncio.create_task(_copy(backend, client))
    stopped = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({up, down, stopped}, return_when=asyncio.FIRST_COMPLETED)
    ended_by = "proxy" if stopped in done else ("client" if up in done else "backend")
    for leg in (client, backend):
        leg.writer.close()
    for task in (up, down, stopped):
        task.cancel()
    sent = await _count(up)
    received = await _count(down)
    for leg in (client, backend):
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await leg.writer.wait_closed()
    return RelayResult(client_to_backend=sent, backend_to_client=received, ended_by=ended_by)


async def _copy(source: Leg, sink: Leg) -> int:
    total = 0
    with contextlib.suppress(OSError, ConnectionError):
        while data := await source.reader.read(_CHUNK):
            sink.writer.write(data)
            total += len(data)
            await sink.writer.drain()
    return total


async def _count(task: asyncio.Task[int]) -> int:
    with contextlib.suppress(asyncio.CancelledError):
        return await task
    return 0
