"""More than one connection on each side for one mailbox.

The target server spends a core per connection parsing APPENDs, so one connection per mailbox caps a
mailbox at one target core. A *lane* is a source and a target session of one mailbox with what
reconnecting them learns; the job's own lane lists and triages, and a ``LanePool`` of extra lanes
(threads) copies *units* beside it: pieces of a folder's messages to copy, cut by UID. Every unit
goes through the same intent → APPEND → outcome ledger steps as a single lane's messages, so the
crash and rerun guarantees don't depend on how many lanes copied.

Extra lanes take connection slots only when they are free at once (never waiting for one), so they
never hold up another mailbox's first connection: the plan's caps hold.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from runners.connectors.base import SourceSession, TargetSession
from runners.model import MessageMeta

log = logging.getLogger("cutover.engine")

#: A unit holds at least this many messages (fewer units, then: each costs a round trip or two)...
MIN_UNIT_MESSAGES = 32
#: ...so extra lanes are asked for only when a folder has enough messages to copy for two units...
SPLIT_MIN_MESSAGES = 2 * MIN_UNIT_MESSAGES
#: ...and a unit holds at most this many messages and about this many bytes (one copy call each).
UNIT_MESSAGES = 250
UNIT_BYTES = 8 * 1024 * 1024
#: Units per lane of a folder, at least: a lane that finishes early takes another one, so no lane
#: copies a long last unit alone while the others wait at the end of the folder.
UNITS_PER_LANE = 2
#: What a message costs the target beside its bytes (a file, an fsync), in bytes: units of equal
#: weight take about as long whatever the mix of small and large messages.
MESSAGE_WEIGHT_BYTES = 32 * 1024
#: Lanes of one mailbox at most (its own included).
MAX_LANES = 4

U = TypeVar("U")


@dataclass(slots=True)
class Lane:
    """A source and a target session of one mailbox, and what reconnecting them has learnt."""

    source: SourceSession | None = None
    target: TargetSession | None = None
    #: ``(folder id, UIDVALIDITY, metas by UID)`` of what this lane is copying: to name a culprit.
    fetching: tuple[int, int, dict[int, MessageMeta]] | None = None
    #: ``(folder id, UIDVALIDITY)`` of the folder this lane's source has open (extra lanes check it).
    opened: tuple[int, int] | None = None


def unit_floor(todo: list[MessageMeta], batch_messages: int, batch_bytes: int) -> int:
    """The fewest messages a unit of ``todo`` should hold: ``MIN_UNIT_MESSAGES``, or a full batch
    (cutting below one makes more requests to the target, each with its own round trip)."""
    size = sum(max(m.size, 0) for m in todo) // max(len(todo), 1)
    return max(MIN_UNIT_MESSAGES, min(batch_messages, batch_bytes // max(size, 1)))


def units(todo: list[MessageMeta], lanes: int, floor: int = MIN_UNIT_MESSAGES) -> list[list[MessageMeta]]:
    """``todo`` (in UID order) cut into consecutive units of about equal weight for ``lanes`` lanes.

    ``UNITS_PER_LANE`` units a lane or more (fewer when that would leave a unit under ``floor``
    messages), none over ``UNIT_MESSAGES`` or about ``UNIT_BYTES``: the lanes of a
    folder finish together instead of waiting for the one with the last, longest unit. The last
    ``lanes`` units weigh half as much as the others: the folder's end waits for half a unit at most.
    """
    weights = [max(m.size, 0) + MESSAGE_WEIGHT_BYTES for m in todo]
    total = sum(weights)
    count = max(
        lanes * UNITS_PER_LANE,
        -(-len(todo) // UNIT_MESSAGES),
        -(-total // (UNIT_BYTES + UNIT_MESSAGES * MESSAGE_WEIGHT_BYTES // 2)),
    )
    count = max(1, min(count, len(todo) // max(floor, 1)))
    # Where each unit ends, in shares of the total weight: 2 for a unit, 1 for one of the last round.
    shares = [2 if n < count - lanes or count < 2 * lanes else 1 for n in range(count)]
    ends, so_far = [], 0
    for share in shares:
        so_far += share
        ends.append(total * so_far / sum(shares))
    out: list[list[MessageMeta]] = []
    unit: list[MessageMeta] = []
    done = 0
    for meta, weight in zip(todo, weights, strict=True):
        unit.append(meta)
        done += weight
        # Cut when this unit reached its share of the weight so far (or its message cap).
        if len(out) < count - 1 and (done >= ends[len(out)] or len(unit) >= UNIT_MESSAGES):
            out.append(unit)
            unit = []
    if unit:
        out.append(unit)
    return out


def lanes_for(running: int, workers: int, source_cap: int, target_cap: int, per_mailbox: int) -> int:
    """Lanes per mailbox when ``running`` mailboxes share the servers.

    The connections of the workers that have no mailbox (at least ``MAX_LANES`` in all): with every
    worker busy the servers are the bottleneck, and more connections would only cost our CPU and
    memory; a mailbox left alone at the end of a wave (the largest, often) gets the connections
    the others gave back. Never more than the servers' caps leave each running mailbox.
    """
    running = max(running, 1)
    share = min(max(workers, MAX_LANES), source_cap, target_cap) // running
    return max(1, min(MAX_LANES, share, per_mailbox))


class LanePool(Generic[U]):
    """Extra lanes copying units handed to ``share``; the caller's own lane takes units too.

    ``open_lane`` returns a lane with its sessions open, or None when no connection slot is free
    (or the servers won't have one more); ``work`` copies one unit on a lane (reconnecting as it
    must) and ``close_lane`` gives a lane's sessions back. The first error of any lane stops the
    others after their current batch and is raised to the caller by ``share`` or ``drain``.
    """

    def __init__(
        self,
        extra: int,
        open_lane: Callable[[], Lane | None],
        work: Callable[[Lane, U], None],
        close_lane: Callable[[Lane], None],
        wanted: Callable[[], int] | None = None,
    ) -> None:
        #: Extra lanes to run (more may be allowed later; fewer may open, when slots are taken).
        self.extra = extra
        #: Asked before each unit the caller's lane takes: extra lanes allowed now (never fewer run).
        self._wanted = wanted
        self._open_lane = open_lane
        self._work = work
        self._close_lane = close_lane
        self._cond = threading.Condition()
        self._queue: deque[U] = deque()
        self._busy = 0
        self._closing = False
        self._threads: list[threading.Thread] = []
        self.error: BaseException | None = None
        #: Set when a lane failed or the pool closes: a lane stops after its current batch.
        self.abort = threading.Event()

    def share(self, own: Lane, pieces: list[U]) -> None:
        """Queue ``pieces`` for the extra lanes and copy on ``own`` until none is left waiting.

        Returns while extra lanes may still copy the last ones (``drain`` waits for them): the
        caller lists the next range meanwhile.
        """
        self._raise()
        self._start_lanes()
        with self._cond:
            self._queue.extend(pieces)
            self._cond.notify_all()
        while True:
            if self._wanted is not None:  # connections other mailboxes gave back: more lanes
                self.extra = max(self.extra, self._wanted())
                self._start_lanes()
            with self._cond:
                if not self._queue or self.error is not None:
                    break
                piece = self._queue.popleft()
                self._busy += 1
            try:
                self._work(own, piece)
            except BaseException as exc:  # the first error of any lane is the one raised below
                self._fail(exc)
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()
        self._raise()

    def open_lanes(self) -> None:
        """Start the extra lanes now (they log in, then wait for units)."""
        self._start_lanes()

    def drain(self) -> None:
        """Wait until every unit handed over is copied; raise the first lane's error."""
        with self._cond:
            while (self._queue or self._busy) and self.error is None:
                self._cond.wait()
        self._raise()

    def settle(self) -> BaseException | None:
        """After a failure: stop handing out units, wait for those being copied (their lanes stop
        after the current batch), and make the pool usable again. Returns the first lane's error."""
        self.abort.set()
        with self._cond:
            self._queue.clear()
            while self._busy:
                self._cond.wait()
        error, self.error = self.error, None
        self.abort.clear()
        return error

    def close(self) -> None:
        """Stop the extra lanes and give their connections back."""
        self.abort.set()
        with self._cond:
            self._closing = True
            self._queue.clear()
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def _fail(self, exc: BaseException) -> None:
        with self._cond:
            if self.error is None:
                self.error = exc
            self._queue.clear()
            self._cond.notify_all()
        self.abort.set()

    def _start_lanes(self) -> None:
        # A lane whose unit failed has closed its sessions and ended: a new one takes its place.
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.extra:
            thread = threading.Thread(
                target=self._run_lane, name=f"{threading.current_thread().name}-lane{len(self._threads) + 1}"
            )
            thread.daemon = True
            self._threads.append(thread)
            thread.start()

    def _run_lane(self) -> None:
        try:
            lane = self._open_lane()
        except Exception as exc:  # one more connection refused: the other lanes go on without it
            log.info("an extra connection could not be opened: %s", exc)
            return
        if lane is None:
            return
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closing:
                        self._cond.wait()
                    if self._closing:
                        return
                    piece = self._queue.popleft()
                    self._busy += 1
                try:
                    self._work(lane, piece)
                except BaseException as exc:  # its sessions may be broken: closed, and the lane ends
                    self._fail(exc)
                    return
                finally:
                    with self._cond:
                        self._busy -= 1
                        self._cond.notify_all()
        finally:
            self._close_lane(lane)
