"""The rows of the cutover window's steps, lease and audit trail (``WaveStepsMixin``), apart from
its reads and writes: a run never touches them, and each dataclass costs ~1 ms to build at import
(``cutover run``'s start-up)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runners.state.statuses import StepStatus


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acts: the OS user, the host, and the SSH client (``addr port``) when there is one."""

    user: str
    host: str
    ssh_client: str | None = None

    def __str__(self) -> str:
        via = f" (ssh from {self.ssh_client})" if self.ssh_client else ""
        return f"{self.user}@{self.host}{via}"


@dataclass(frozen=True, slots=True)
class StepRow:
    id: int
    wave: str
    step: str
    status: StepStatus
    started: float
    ended: float | None
    actor: Actor
    params: dict[str, Any]
    checked: list[Any]
    did: dict[str, Any]


@dataclass(frozen=True, slots=True)
class LeaseRow:
    wave: str
    holder: str
    host: str
    pid: int
    taken: float
    expires: float


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One operator action, from whichever table the store keeps it in."""

    at: float
    who: str
    action: str
    wave: str | None
    mailbox: str | None
    detail: str
    params: dict[str, Any]


@dataclass(frozen=True, slots=True)
class WaveStanding:
    """Where one wave stands in its window (``cutover status``, and the cockpit's later)."""

    wave: str
    #: The last main step done, or ``copying`` before any.
    stage: str
    #: When the wave reached its stage (None: still copying), and who took it there.
    since: float | None
    by: str | None
    #: The last step since then that didn't complete, as ``step: status``; None when none.
    last_problem: str | None
