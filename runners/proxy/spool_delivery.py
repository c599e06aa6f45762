"""The spool's delivery loop: each queued message to each of its backends, retried with backoff.

A message's recipients are grouped by backend; each group is one SMTP transaction with that
backend's ``smtp`` endpoint. Right after the backend's ``250`` to the final dot, the group's outcome is
recorded durably (``Spool.record``), so a restart doesn't deliver it again. A ``5xx`` for a recipient
(or for the whole message) is final: recorded as refused and, once every recipient is finished, the
message moves to ``failed/`` with the backend's words. A ``4xx``, a timeout or a backend that is down
is retried after ``ProxySmtpSettings.retry_delay``; after ``give_up_hours`` the message moves to
``failed/``. With ``bounce_via``, the sender is told (``dsn.py``): the notice is spooled as
``<id>-dsn`` before the message moves, so a crash in between sends it once, and it is delivered like
any spooled message through that backend. A message from the null sender gets no notice.

The retry schedule is kept in memory: after a restart every queued message is tried at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy import dsn
from runners.proxy.backend_connect import BackendUnavailable
from runners.proxy.contracts import ProxyBackend, Service
from runners.proxy.smtp_backend import BackendSession, mail_from, open_session
from runners.proxy.smtp_io import Reply
from runners.proxy.smtp_parse import encode
from runners.proxy.spool import Outcome, Pending, Recipient, Spool
from runners.safe_text import safe

log = logging.getLogger(__name__)

_CHUNK = 1 << 16


@dataclass(frozen=True, slots=True)
class _Attempt:
    outcome: Outcome
    #: Why the rest of the group must wait (a 4xx, a timeout, a backend down); None when all finished.
    retry_because: str | None


class SpoolDelivery:
    """Delivers what the spool holds; ``run`` until cancelled, ``wake`` when a message was spooled."""

    def __init__(
        self, spool: Spool, backends: Mapping[str, ProxyBackend], settings: ProxySmtpSettings
    ) -> None:
        self.spool = spool
        self.backends = backends
        self.settings = settings
        self.wake = asyncio.Event()
        self._failures: dict[str, int] = {}
        self._due: dict[str, float] = {}

    async def run(self) -> None:
        while True:
            self.wake.clear()
            now = time.monotonic()
            for spool_id in await asyncio.to_thread(self.spool.pending):
                if self._due.get(spool_id, 0.0) <= now:
                    await self._deliver_guarded(spool_id)
            self._forget_gone()
            wait = min(self._due.values(), default=None)
            timeout = None if wait is None else max(0.0, wait - time.monotonic())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(timeout):
                    await self.wake.wait()

    async def _deliver_guarded(self, spool_id: str) -> None:
        try:
            await self.deliver(spool_id)
        except Exception as exc:  # one bad file must not stop the delivery of every other message
            log.error("delivering spooled message %s failed: %s", spool_id, safe(type(exc).__name__))
            failures = self._failures.get(spool_id, 0) + 1
            self._failures[spool_id] = failures
            self._due[spool_id] = time.monotonic() + self.settings.retry_delay(failures)

    def _forget_gone(self) -> None:
        queued = set(self.spool.pending())
        for spool_id in [s for s in self._due if s not in queued]:
            self._due.pop(spool_id, None)
            self._failures.pop(spool_id, None)

    async def deliver(self, spool_id: str) -> None:
        """One attempt at every unfinished recipient of one message."""
        pending = await asyncio.to_thread(self.spool.load, spool_id)
        if pending is None:
            return
        waits: list[str] = []
        last_words: dict[str, str] = {}  # backend -> why its recipients wait
        refused = list(pending.refused)
        finished = set(pending.finished)
        for backend, indices in _groups(pending).items():
            attempt = await self._attempt(pending, backend, indices)
            if attempt.outcome.delivered or attempt.outcome.refused:
                await asyncio.to_thread(self.spool.record, spool_id, attempt.outcome)
                refused.extend(attempt.outcome.refused)
                finished.update(attempt.outcome.delivered, (i for i, _ in attempt.outcome.refused))
            if attempt.retry_because is not None:
                waits.append(f"{backend}: {attempt.retry_because}")
                last_words[backend] = attempt.retry_because
        if not waits:
            await self._finished(pending, refused)
            return
        failures = self._failures.get(spool_id, 0) + 1
        self._failures[spool_id] = failures
        age_hours = (time.time() - pending.envelope.received_at) / 3600
        if age_hours >= self.settings.give_up_hours:
            log.error(
                "spooled message %s given up after %.1f h: %s", spool_id, age_hours, safe("; ".join(waits))
            )
            why: dict[str, object] = {
                "gave_up_after_hours": round(age_hours, 2),
                "last_errors": waits,
                "refused": [[pending.envelope.recipients[i].address, w] for i, w in refused],
            }
            late = [
                (i, f"gave up after {age_hours:.1f} h: {w}")
                for i, w in _waiting(pending, finished, last_words)
            ]
            await self._fail(pending, [*_failed(pending, refused), *_failed(pending, late, dsn.EXPIRED)], why)
            return
        delay = self.settings.retry_delay(failures)
        self._due[spool_id] = time.monotonic() + delay
        log.info("spooled message %s: retry in %.0f s (%s)", spool_id, delay, safe("; ".join(waits)))

    async def _finished(self, pending: Pending, refused: list[tuple[int, str]]) -> None:
        spool_id = pending.envelope.id
        self._due.pop(spool_id, None)
        self._failures.pop(spool_id, None)
        if refused:
            why: dict[str, object] = {
                "refused": [[pending.envelope.recipients[i].address, w] for i, w in refused]
            }
            await self._fail(pending, _failed(pending, refused), why)
            log.error(
                "spooled message %s refused for %d recipient(s); kept in failed/", spool_id, len(refused)
            )
        else:
            await asyncio.to_thread(self.spool.finish, spool_id)

    async def _fail(
        self, pending: Pending, failed: list[dsn.FailedRecipient], why: dict[str, object]
    ) -> None:
        """Tell the sender (when a backend takes notices), then move the message to ``failed/``. A
        notice that can't be made never keeps the message in the queue: the failure is in ``why``."""
        try:
            notice = await asyncio.to_thread(self._spool_notice, pending, failed)
        except Exception as exc:  # logged and kept with the message in failed/
            notice = None
            why["notice_error"] = safe(f"{type(exc).__name__}: {exc}")
            log.error(
                "spooled message %s: no notice for its sender: %s", pending.envelope.id, why["notice_error"]
            )
        if notice is not None:
            why["notice"] = notice
            self.wake.set()
        await asyncio.to_thread(self.spool.give_up, pending.envelope.id, why)

    def _spool_notice(self, pending: Pending, failed: list[dsn.FailedRecipient]) -> str | None:
        """The notice's spool id once it is queued (None: none is due). Blocking."""
        envelope = pending.envelope
        via = self.settings.bounce_via
        if via is None or not envelope.sender or not failed:
            return None  # no backend for notices, or a notice itself (never bounced in turn)
        notice_id = f"{envelope.id}-dsn"
        # Queued before a crash: once is enough. This holds because the delivery is sequential and
        # ``pending()`` sorts "<id>" before "<id>-dsn": a restarted message meets its notice queued.
        if self.spool.holds(notice_id):
            return notice_id
        with self.spool.open_body(envelope.id) as body:
            header = dsn.original_header(body.read(dsn.MAX_HEADER_BYTES + 2))
        text = dsn.compose(
            reporting_host=self.settings.hostname, sender=envelope.sender, spool_id=envelope.id,
            arrival=envelope.received_at, failed=failed, header=header, now=time.time(),
        )  # fmt: skip
        draft = self.spool.begin("", "", [Recipient(envelope.sender, via)], spool_id=notice_id)
        try:
            draft.write(_dot_stuffed(text))
        except BaseException:
            draft.abort()
            raise
        draft.commit()
        log.info("spooled message %s: notice %s queued for its sender", envelope.id, notice_id)
        return notice_id

    async def _attempt(self, pending: Pending, backend_name: str, indices: list[int]) -> _Attempt:
        nothing = Outcome(backend_name)
        backend = self.backends.get(backend_name)
        endpoint = None if backend is None else backend.endpoints.get(Service.SMTP)
        if endpoint is None:
            return _Attempt(nothing, f"no smtp endpoint for backend {backend_name}")
        try:
            session = await open_session(
                endpoint, self.settings.hostname, self.settings.backend_timeout_seconds
            )
        except BackendUnavailable as exc:
            return _Attempt(nothing, str(exc))
        try:
            return await self._transaction(session, pending, backend_name, indices)
        except BackendUnavailable as exc:
            await session.close(quit_first=False)
            return _Attempt(nothing, str(exc))
        finally:
            await session.close()

    async def _transaction(
        self, session: BackendSession, pending: Pending, backend_name: str, indices: list[int]
    ) -> _Attempt:
        envelope = pending.envelope
        # The envelope is answered at once by a healthy backend (as while a sender waits); the message
        # and its final answer get the data timeout. A stalled backend can't hold the queue for long.
        envelope_timeout = self.settings.backend_timeout_seconds
        timeout = self.settings.backend_data_timeout_seconds
        body = envelope.mail_params.removeprefix("BODY=") or None
        answer = await session.command(mail_from(session, envelope.sender, body, None), envelope_timeout)
        if not answer.positive:
            return _final_or_retry(backend_name, indices, answer)
        accepted: list[int] = []
        refused: list[tuple[int, str]] = []
        waiting: str | None = None
        for index in indices:
            rcpt = encode(f"RCPT TO:<{envelope.recipients[index].address}>")
            answer = await session.command(rcpt, envelope_timeout)
            if answer.positive:
                accepted.append(index)
            elif answer.code >= 500:
                refused.append((index, _words(answer)))
            else:
                waiting = _words(answer)
        if not accepted:
            await session.command(b"RSET", envelope_timeout)
            return _Attempt(Outcome(backend_name, (), tuple(refused)), waiting)
        answer = await session.command(b"DATA", envelope_timeout)
        if answer.code != 354:
            return _with_refused(_final_or_retry(backend_name, accepted, answer), refused, waiting)
        await self._send_body(session, envelope.id, timeout)
        answer = await session.read_reply(timeout)
        if answer.positive:
            return _Attempt(Outcome(backend_name, tuple(accepted), tuple(refused)), waiting)
        return _with_refused(_final_or_retry(backend_name, accepted, answer), refused, waiting)

    async def _send_body(self, session: BackendSession, spool_id: str, timeout: float) -> None:
        writer = session.writer
        try:
            async with asyncio.timeout(timeout):
                with self.spool.open_body(spool_id) as body:
                    while chunk := body.read(_CHUNK):
                        writer.write(chunk)
                        await writer.drain()
                writer.write(b".\r\n")
                await writer.drain()
        except (OSError, TimeoutError) as exc:
            raise BackendUnavailable(safe(str(exc) or type(exc).__name__)) from None


def _groups(pending: Pending) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for index, recipient in enumerate(pending.envelope.recipients):
        if index not in pending.finished:
            groups.setdefault(recipient.backend, []).append(index)
    return groups


def _failed(
    pending: Pending, indices_words: list[tuple[int, str]], status: str | None = None
) -> list[dsn.FailedRecipient]:
    recipients = pending.envelope.recipients
    return [
        dsn.FailedRecipient(recipients[i].address, words, status or dsn.status_of(words))
        for i, words in indices_words
    ]


def _waiting(pending: Pending, finished: set[int], last_words: dict[str, str]) -> list[tuple[int, str]]:
    """The recipients still unfinished when the spool gives up, each with its backend's last words."""
    recipients = pending.envelope.recipients
    return [
        (i, last_words.get(r.backend, "not delivered")) for i, r in enumerate(recipients) if i not in finished
    ]


def _dot_stuffed(text: bytes) -> bytes:
    """CRLF lines as the spool keeps a body: a line starting with a dot gets a second one."""
    return b"\r\n".join(b"." + line if line.startswith(b".") else line for line in text.split(b"\r\n"))


def _words(answer: Reply) -> str:
    return safe(f"{answer.code} {answer.text}")


def _final_or_retry(backend: str, indices: list[int], answer: Reply) -> _Attempt:
    """A 5xx refuses the recipients for good; anything else is tried again later."""
    if answer.code >= 500:
        return _Attempt(Outcome(backend, (), tuple((i, _words(answer)) for i in indices)), None)
    return _Attempt(Outcome(backend), _words(answer))


def _with_refused(attempt: _Attempt, refused: list[tuple[int, str]], waiting: str | None) -> _Attempt:
    outcome = Outcome(
        attempt.outcome.backend, attempt.outcome.delivered, (*refused, *attempt.outcome.refused)
    )
    return _Attempt(outcome, attempt.retry_because or waiting)
