"""Where each wave stands in its cutover window, for the cockpit and the helpdesk's triage: its stage
in words, since when and by whom, the operator holding it right now ("switching…"), when its users
moved to the target, and the late mail its settle step caught. Read from ``wave_steps`` and the
wave's lease; a store from before the window has neither, and every wave is copying."""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass

from runners.state.errors import StoreError
from runners.state.runs import alive
from runners.state.statuses import StepStatus
from runners.state.store import StateStore
from runners.state.wave_step_rows import StepRow

#: The stage as the overview writes it (readable at 80 columns, nothing abbreviated).
STAGE_WORDS = {
    "copying": "copying",
    "ready": "ready",
    "final-pass": "final pass",
    "switched": "switched",
    "settled": "settled",
    "closed": "closed",
    "rolled-back": "rolled back",
}
#: Shown instead of the stage while an operator holds the wave's lease (a step is running).
SWITCHING = "switching…"
#: Stages at which the target serves the wave's users.
ON_TARGET = frozenset({"switched", "settled", "closed"})


@dataclass(frozen=True, slots=True)
class WaveWindow:
    wave: str
    #: The last main step done (``copying`` before any): ``wave_standings``'s stage.
    stage: str
    since: float | None = None
    by: str | None = None
    #: The last step since then that did not complete ("switched: refused").
    problem: str | None = None
    #: Who holds the wave's lease right now (a step runs), as ``holder@host``; None when nobody.
    holder: str | None = None
    #: When the users moved to the target (the latest switched step's end), None when they are not there.
    on_target_since: float | None = None
    #: When a rollback moved them back (None: never rolled back).
    rolled_back_at: float | None = None
    #: Late messages the latest settle step caught (its ``did["late_messages"]``), None until one says.
    late_messages: int | None = None

    @property
    def on_target(self) -> bool:
        return self.stage in ON_TARGET

    @property
    def label(self) -> str:
        """The overview's cell: the stage in words, or "switching…" while a step runs under the lease."""
        return SWITCHING if self.holder else STAGE_WORDS.get(self.stage, self.stage)

    def sentence(self) -> str:
        """The detail line's words: the stage, since when and by whom, who holds it, what went wrong."""
        text = f"window: {STAGE_WORDS.get(self.stage, self.stage)}"
        if self.since is not None:
            text += f" since {stamp(self.since)}" + (f" by {self.by}" if self.by else "")
        if self.holder:
            text += f"; a step is running now, held by {self.holder}"
        if self.late_messages is not None:
            text += f"; {self.late_messages:,} late message(s) caught"
        if self.problem:
            text += f"; last attempt {self.problem}"
        return text


def stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(at))


def wave_windows(store: StateStore, waves: Sequence[str]) -> dict[str, WaveWindow]:
    """Each of ``waves`` with where it stands (a store without the window's tables: all copying)."""
    standings = store.wave_standings(waves)
    try:
        steps = store.wave_steps()
        leases = {w: store.wave_lease(w) for w in waves}
    except StoreError as exc:  # a read-only look at a store from before the window: no such tables
        if "no such table" not in str(exc):
            raise
        return {s.wave: WaveWindow(s.wave, s.stage) for s in standings}
    now, host = time.time(), socket.gethostname()
    out = {}
    for standing in standings:
        mine = [s for s in steps if s.wave == standing.wave and s.status == StepStatus.DONE]
        lease = leases[standing.wave]
        # Held: not expired, and (on this host) its process still alive: a killed step frees the wave.
        held = lease is not None and lease.expires > now and (lease.host != host or alive(lease.pid))
        holder = f"{lease.holder}@{lease.host}" if lease is not None and held else None
        out[standing.wave] = WaveWindow(
            standing.wave,
            standing.stage,
            standing.since,
            standing.by,
            standing.last_problem,
            holder,
            _ended(mine, "switched") if standing.stage in ON_TARGET else None,
            _ended(mine, "rolled-back"),
            _late_messages(mine),
        )
    return out


def _ended(steps: list[StepRow], step: str) -> float | None:
    return next((s.ended for s in reversed(steps) if s.step == step), None)


def _late_messages(steps: list[StepRow]) -> int | None:
    settled = next((s for s in reversed(steps) if s.step == "settled"), None)
    late = settled.did.get("late_messages") if settled is not None else None
    return late if isinstance(late, int) else None
