"""The rows of readiness check history (``CheckHistoryMixin``), apart from its reads and writes: a
run never touches them, and each dataclass costs ~1 ms to build at import (``cutover run``'s
start-up)."""

from __future__ import annotations

from dataclasses import dataclass

from runners.state.statuses import CheckState


@dataclass(frozen=True, slots=True)
class CheckRunRecord:
    started: float
    seconds: float | None
    phase: str
    scope: str  # "all", or the category / ids that were run
    complete: bool  # no check ended in error
    #: Who ran it, ``user@host`` (None for runs recorded before this was kept).
    operator: str | None = None


@dataclass(frozen=True, slots=True)
class CheckRunRow:
    id: int
    started: float
    phase: str


@dataclass(frozen=True, slots=True)
class CategoryChecked:
    """When a category's checks last ran, and who ran them."""

    category: str
    started: float
    operator: str | None
    run_id: int


@dataclass(frozen=True, slots=True)
class CheckResultRecord:
    check_id: str
    category: str
    state: CheckState
    reason: str | None
    seconds: float | None


@dataclass(frozen=True, slots=True)
class CheckRow:
    """A check that did not end ok in the last run, and why."""

    check_id: str
    category: str
    state: CheckState
    reason: str


@dataclass(frozen=True, slots=True)
class FindingRecord:
    fingerprint: str
    check_id: str
    severity: str  # blocker | warning | info | pass (checks.model.Severity)
    object_type: str
    object_id: str
    title: str
    observed: str
    expected: str
    evidence: str
    remediation: str
    waiver: str | None


@dataclass(frozen=True, slots=True)
class FindingRow:
    """A stored finding, with the category of the check that made it."""

    check_id: str
    category: str
    severity: str
    object_type: str
    object_id: str
    title: str
    observed: str
    expected: str
    evidence: str
    remediation: str
    waiver: str | None
    fingerprint: str
