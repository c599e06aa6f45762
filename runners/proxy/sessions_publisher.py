"""Publishes the proxy's open sessions per backend and service to the store every few seconds, so that
``cutover status`` and every cockpit (views over the store) can show them."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

from runners.proxy.contracts import Service
from runners.proxy.store_writer import StoreWriter
from runners.state.proxy_rows import SessionCount, SessionCounts

log = logging.getLogger(__name__)

DEFAULT_EVERY = 5.0
#: What the session registry answers: sessions open now per (service, backend).
Counts = Callable[[], Mapping[tuple[Service, str], int]]


def proxy_id() -> str:
    """This proxy's name among several: host:pid."""
    return f"{socket.gethostname()}:{os.getpid()}"


class SessionsPublisher:
    def __init__(self, writer: StoreWriter, counts: Counts, every: float = DEFAULT_EVERY) -> None:
        self.writer = writer
        self.counts = counts
        self.every = every
        self.proxy = proxy_id()

    def publish(self) -> None:
        """Hand the counts of this moment to the writer (its next batch stores them)."""
        try:
            now = self.counts()
        except Exception as exc:  # the registry's trouble must not stop the proxy
            log.warning("proxy: session counts unavailable: %s", type(exc).__name__)
            return
        rows = tuple(
            SessionCount(backend, str(service), n) for (service, backend), n in sorted(now.items()) if n > 0
        )
        self.writer.set_sessions(SessionCounts(self.proxy, time.time(), rows))

    async def run(self) -> None:
        """Publish now and every ``every`` seconds until cancelled."""
        while True:
            self.publish()
            await asyncio.sleep(self.every)
