"""Flaky networks are not broken messages.

A reset or a stall is a fault of the connection: reconnect and resume for as long as the attempts
make progress, and give up only when several in a row copied nothing. A message is declared failed
only when it breaks the connection on its own, the same way, on several fresh connections: the
"server hangs up on this message" case (Dovecot's ``* BYE`` on a file it can't read), not a NAT
gateway forgetting the flow while the message happened to be on the wire.

The target side is narrowed the same way: an append the target keeps failing (a dropped
connection, a 5xx past the adapter's own retries; never throttling, which is waited out) names
the messages it carried (``AppendFailed``); they are then appended one at a time, after the rest
of their batch, and one whose last ``STRIKES`` strikes (failures alone) had the same words is
recorded as failed in the server's words (Exchange's and Graph's "poison" items: an
ErrorInternalServerError or a 500 for one MIME, every time), so that one message never holds up
its mailbox.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from runners.errors import (
    AuthError,
    CommandError,
    ConnectError,
    ConnectionLost,
    FetchConnectionLost,
    ProtocolError,
)

if TYPE_CHECKING:
    from runners.model import MessageMeta

#: Seconds before each reconnect, by how many attempts in a row made no progress; the last repeats.
BACKOFF = (0.25, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
#: Attempts in a row without progress after which a mailbox (or folder) is given up.
ATTEMPTS_WITHOUT_PROGRESS = 6
#: Fresh connections a message must break on its own, the same way each time, to be declared failed.
STRIKES = 3


class NoProgress(ProtocolError):
    """The connection kept failing and the attempts stopped making progress: try again later."""

    retryable = True

    def __init__(self, last: ProtocolError, attempts: int) -> None:
        super().__init__(last.server, last.operation, last.server_text, last.code)
        self.last = last
        self.args = (f"gave up after {attempts} attempts in a row that copied nothing; the last: {last}",)


class AppendFailed(ProtocolError):
    """The target kept failing an append (``cause``: its error, past the adapter's own retries) that
    carried ``metas``, of the ledger's folder ``folder_id`` / ``uidvalidity``; ``single``: that
    append carried one message only, making it the suspect."""

    retryable = True

    def __init__(
        self, cause: ProtocolError, folder_id: int, uidvalidity: int, metas: Sequence[MessageMeta]
    ) -> None:
        super().__init__(cause.server, cause.operation, cause.server_text, cause.code)
        self.cause = cause
        self.folder_id = folder_id
        self.uidvalidity = uidvalidity
        self.metas = list(metas)
        self.uids = [m.uid for m in metas]
        self.single = len(self.metas) == 1
        self.args = cause.args


@dataclass(slots=True)
class Suspects:
    """Messages of one folder pass that were on the wire when the source connection broke.

    A suspect is fetched alone, after the others (``SourceSession.isolate``). Each time it breaks a
    connection on its own that is a strike; ``STRIKES`` strikes with the same words make it failed.
    """

    alone: set[int] = field(default_factory=set)
    strikes: dict[int, list[str]] = field(default_factory=dict)
    #: Declared failed in this pass: left out of later attempts until the next run.
    failed: set[int] = field(default_factory=set)
    #: Target side: how many messages the target had taken when each became a suspect.
    since: dict[int, int] = field(default_factory=dict)
    #: Target side: suspects that failed alone already, appended after the other suspects.
    tried: set[int] = field(default_factory=set)

    def clear(self) -> None:
        self.alone.clear()
        self.strikes.clear()
        self.failed.clear()
        self.since.clear()
        self.tried.clear()

    def narrow(self, exc: FetchConnectionLost) -> bool:
        """Learn from a drop mid-fetch; True when it was a strike (which counts as progress).

        A suspect is fetched after every other message of its attempt, so a strike also says the
        connection carried all of those: evidence against the message, not against the link. After
        ``STRIKES`` strikes with the same words the message is in ``failed``.
        """
        if not exc.uids:
            return False
        # Bodies arrive in the order asked for: the first one not delivered was on the wire.
        uid = exc.uids[0]
        if uid in self.failed:
            return False
        if not (exc.single and uid in self.alone):
            self.alone.add(uid)
            return False
        return self._strike(uid, exc.server_text)

    def narrow_append(self, exc: AppendFailed, taken: int) -> bool:
        """Learn from an append the target kept failing; True when it was a strike (progress).
        ``taken``: how many messages the target took so far (copied, or found after a loss).

        Which message of a batch is at fault the target doesn't say: each is appended alone from
        then on (after the rest of its batch). One that fails alone is a strike, but only once the
        target took some other message since its batch failed, so that a target failing everything
        from the start (an outage) never blames a batch's messages one by one: the attempts make no
        progress and the mailbox is given up for a later run, as before. That one witness stands
        for all of a message's strikes: an outage that begins after another message went in can
        strike the suspects (``STRIKES`` quick attempts). A batch of one from the start (the last
        message of a folder, a rerun's one message left) has no witness at all: it is struck from
        its second failure on. Either way a message wrongly failed is tried again by the next run.
        ``STRIKES`` strikes in a row with the same words make it failed."""
        if not exc.single:
            for uid in exc.uids:
                if uid not in self.failed and uid not in self.alone:
                    self.alone.add(uid)
                    self.since[uid] = taken
            return False
        uid = exc.uids[0]
        if uid in self.failed:
            return False
        self.tried.add(uid)  # the other suspects go first next time: witnesses, if they go in
        if uid not in self.alone:  # a batch of one from the start: alone next time, then strikes
            self.alone.add(uid)
            self.since[uid] = -1
            return False
        if taken <= self.since.get(uid, -1):
            return False  # no sign yet that the target takes anything else
        return self._strike(uid, exc.server_text)

    def _strike(self, uid: int, server_text: str) -> bool:
        seen = self.strikes.setdefault(uid, [])
        seen.append(_shape(server_text))
        if len(seen) >= STRIKES and len(set(seen[-STRIKES:])) == 1:
            self.failed.add(uid)
            self.alone.discard(uid)
        return len(seen) <= STRIKES


def _shape(server_text: str) -> str:
    """The words of a failure without its numbers: Dovecot's ``* BYE`` carries a timestamp."""
    return re.sub(r"\d+", "#", server_text)


def culprit_reason(exc: FetchConnectionLost) -> str:
    return (
        f"the source closed the connection while sending this message ({exc.operation}: {exc.server_text}), "
        f"alone, on {STRIKES} fresh connections in a row"
    )


def poison_reason(exc: AppendFailed) -> str:
    return (
        f"target refused APPEND: {exc.operation}: {exc.server_text} (this message alone, "
        f"the same refusal on {STRIKES} attempts)"
    )


def blames_message(exc: ProtocolError) -> bool:
    """Whether an append's failure may be the fault of what it carried: the engine would retry it
    (a drop, a 5xx), and the server did not say "not now" for itself (throttling is waited out as
    before, never held against a message); connecting, logging in, a refused mailbox are not."""
    return (
        exc.retryable
        and not exc.throttled
        and not isinstance(exc, ConnectError | AuthError | NoProgress | AppendFailed)
    )


class Reconnecting:
    """Runs one step of a mailbox, reconnecting after connection faults while attempts make progress.

    ``progress`` counts the messages dealt with so far (copied, matched or failed); ``drop`` closes
    the sessions so the next attempt opens fresh ones; ``narrow`` learns from a drop mid-fetch and
    says whether that was progress (see ``Suspects.narrow``), and so for an append the target kept
    failing (``Suspects.narrow_append``); ``pause`` waits out the backoff
    (and raises if the run is stopped meanwhile); ``on_reconnect`` and ``on_success`` tell the job.
    """

    def __init__(
        self,
        progress: Callable[[], int],
        drop: Callable[[], None],
        narrow: Callable[[FetchConnectionLost | AppendFailed], bool],
        pause: Callable[[float], None],
        on_reconnect: Callable[[str, ProtocolError, float], None],
        on_success: Callable[[], None],
    ) -> None:
        self.progress = progress
        self.drop = drop
        self.narrow = narrow
        self.pause = pause
        self.on_reconnect = on_reconnect
        self.on_success = on_success

    def run(self, what: str, action: Callable[[], None]) -> None:
        fruitless = 0
        mark = self.progress()
        while True:
            try:
                action()
                self.on_success()
                return
            except (FetchConnectionLost, AppendFailed) as exc:
                problem: ProtocolError = exc
                narrowed = self.narrow(exc)
            except (ConnectionLost, ConnectError, CommandError, AuthError) as exc:
                # Not retryable: a TLS refusal, a wrong password, a NO that is final.
                if not exc.retryable:
                    raise
                problem, narrowed = exc, False
            self.drop()
            now = self.progress()
            fruitless = 0 if narrowed or now > mark else fruitless + 1
            mark = now
            if fruitless >= ATTEMPTS_WITHOUT_PROGRESS:
                raise NoProgress(problem, fruitless) from None
            delay = BACKOFF[min(fruitless, len(BACKOFF) - 1)]
            self.on_reconnect(what, problem, delay)
            self.pause(delay)
