"""Rows the store lists for ``cutover status`` and the readiness checks, never for a run: apart from
their mixins (``fleet_hosts``, ``runs``), which import them where they build them, so a run doesn't
create their classes (each dataclass compiles its methods at import, a start-up cost)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class HostRow:
    name: str
    host: str
    pid: int
    started: float
    heartbeat: float
    state: str  # working | idle | stopping | stopped
    #: The source mailboxes it holds now.
    mailboxes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunSummary:
    """A finished run's totals (``runs.summary``, as ``finish_run`` stored them)."""

    id: int
    summary: dict[str, Any]
