"""Flaky networks are not broken messages.

A reset or a stall is a fault of the connection: reconnect and resume for as long as the attempts
make progress, and give up only when several in a row copied nothing. A message is declared failed
only when it breaks the connection on its own, the same way, on several fresh connections: the
"server hangs up on this message" case (Dovecot's ``* BYE`` on a file it can't read), not a NAT
gateway forgetting the flow while the message happened to be on the wire.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from runners.errors import (
    AuthError,
    CommandError,
    ConnectError,
    ConnectionLost,
    FetchConnectionLost,
    ProtocolError,
)

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

    def clear(self) -> None:
        self.alone.clear()
        self.strikes.clear()
        self.failed.clear()

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
        seen = self.strikes.setdefault(uid, [])
        seen.append(_shape(exc.server_text))
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


class Reconnecting:
    """Runs one step of a mailbox, reconnecting after connection faults while attempts make progress.

    ``progress`` counts the messages dealt with so far (copied, matched or failed); ``drop`` closes
    the sessions so the next attempt opens fresh ones; ``narrow`` learns from a drop mid-fetch and
    says whether that was progress (see ``Suspects.narrow``); ``pause`` waits out the backoff
    (and raises if the run is stopped meanwhile); ``on_reconnect`` and ``on_success`` tell the job.
    """

    def __init__(
        self,
        progress: Callable[[], int],
        drop: Callable[[], None],
        narrow: Callable[[FetchConnectionLost], bool],
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
            except FetchConnectionLost as exc:
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
