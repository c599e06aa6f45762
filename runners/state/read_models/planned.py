"""What a snapshot needs of the plan's mailbox list, worked out once instead of on every poll.

A fleet's plan lists 100,000 mailboxes: counting them per wave, or finding the ones no run has
touched yet, is a pass over all of them, and a poller that made it twice a second would spend the
interpreter the cockpit's keys need (cockpit_bench.py). The counts per wave never change for a plan;
the untouched mailboxes change only when the store gains mailboxes (it never loses any), so they are
found again only when the store's count moved.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from runners.plan.model import MailboxEntry, Plan
from runners.state.store import StateStore


@dataclass(slots=True)
class PlannedFleet:
    plan: Plan
    #: Mailboxes per wave, as planned.
    per_wave: Counter[str] = field(default_factory=Counter)
    #: The plan's waves in order (``Plan.waves`` passes over every mailbox when no ``[[waves]]``).
    waves: tuple[str, ...] = ()
    _known: int = -1
    _unseen: tuple[MailboxEntry, ...] = ()
    _survey_key: tuple[int, int] = (-1, -1)
    _unseen_bytes: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.per_wave = Counter(m.wave for m in self.plan.mailboxes)
        self.waves = self.plan.waves

    def unseen(self, store: StateStore, known: int) -> tuple[MailboxEntry, ...]:
        """The planned mailboxes the store has no row for (``known``: how many rows it has now), by
        source (the order a window of the list merges them in: ``snapshot._rows``)."""
        if known != self._known:
            seen = store.mailbox_sources()
            unseen = (m for m in self.plan.mailboxes if m.source not in seen)
            self._unseen = tuple(sorted(unseen, key=lambda m: m.source))
            self._known = known
        return self._unseen

    @property
    def last_unseen(self) -> tuple[MailboxEntry, ...]:
        """What ``unseen`` found last (between two snapshots: the rows of a view opened meanwhile)."""
        return self._unseen

    def unseen_bytes(self, survey: dict[str, tuple[int, int]], known: int) -> dict[str, int]:
        """Per wave, the surveyed bytes of its untouched mailboxes (after ``unseen`` for ``known``)."""
        key = (known, id(survey))
        if key != self._survey_key:
            sums: Counter[str] = Counter()
            for entry in self._unseen:
                sums[entry.wave] += survey.get(entry.source, (0, 0))[1]
            self._unseen_bytes, self._survey_key = dict(sums), key
        return self._unseen_bytes
