"""The proxy's store side in one piece, for ``cutover proxy run``: the store writer, the observers it
feeds (the login journal always; credential capture when ``[proxy.capture]`` is on; the on-login
queue when a wave starts on login) and the publisher of live session counts.

::

    side = StoreSide.for_plan(plan)
    await side.start()            # opens the store, re-keys captured passwords after a rotation
    ctx = build_context(plan, store, observers=side.observers)
    side.publish(ctx.registry.counts)   # live session counts into the store every few seconds
    ... listeners tell every observer of side.observers ...
    await side.aclose()           # commits what is left, takes this proxy's session counts away
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field

from runners.connectors.captured import Keyring, rekey
from runners.plan.model import Plan
from runners.proxy.capture import CaptureObserver
from runners.proxy.contracts import LoginObserver
from runners.proxy.journal import JournalObserver
from runners.proxy.on_login import OnLoginObserver
from runners.proxy.sessions_publisher import DEFAULT_EVERY, Counts, SessionsPublisher
from runners.proxy.store_writer import StoreWriter

log = logging.getLogger(__name__)


@dataclass
class StoreSide:
    plan: Plan
    writer: StoreWriter
    observers: list[LoginObserver] = field(default_factory=list)
    keyring: Keyring | None = None
    publisher: SessionsPublisher | None = None
    _task: asyncio.Task[None] | None = None

    @classmethod
    def for_plan(
        cls, plan: Plan, counts: Counts | None = None, writer: StoreWriter | None = None
    ) -> StoreSide:
        """Reveals the capture keys now (a wrong key stops the proxy at start, not at a user's login)."""
        writer = writer or StoreWriter(plan.state_db, server=plan.state_server)
        side = cls(plan, writer)
        side.observers.append(JournalObserver(writer))
        if plan.capture.enabled:
            side.keyring = Keyring(plan.capture)
            side.observers.append(CaptureObserver(writer, side.keyring))
        return side

    async def start(self, reseal: bool = True) -> None:
        """``reseal``: re-seal captured passwords under the current key (one worker of several does it)."""
        store = await asyncio.to_thread(self.writer.start)
        if reseal and self.keyring is not None and self.plan.capture.previous_keys:
            done = await asyncio.to_thread(rekey, store, self.keyring)
            log.info("proxy: captured passwords re-keyed: %d resealed, %d already current, %d expired",
                     done.resealed, done.current, done.expired)  # fmt: skip
        on_login = OnLoginObserver(self.writer, self.plan, _queued_pairs(store.queued_by_login()))
        if on_login.watching:
            self.observers.append(on_login)

    def publish(self, counts: Counts, every: float = DEFAULT_EVERY) -> None:
        """Store the registry's session counts now and every ``every`` seconds (on the running loop)."""
        self.publisher = SessionsPublisher(self.writer, counts, every)
        self._task = asyncio.create_task(self.publisher.run(), name="proxy-sessions-publisher")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        proxy = self.publisher.proxy if self.publisher is not None else None
        await asyncio.to_thread(self.writer.close, proxy)


def _queued_pairs(queued: dict[str, set[str]]) -> list[tuple[str, str]]:
    return [(wave, mailbox) for wave, mailboxes in queued.items() for mailbox in mailboxes]
