"""What a readiness check produces.

A *finding* is one observation about one object (a domain, a mailbox, a folder, a server) with a
severity: blocker, warning, info or pass. Whether a check could run at all is its *state*: ok,
error (it could not evaluate, with why) or skipped (not applicable here). An error is never a pass.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum

from runners.safe_text import safe, safe_lines


class Severity(StrEnum):
    BLOCKER = "blocker"
    WARNING = "warning"
    INFO = "info"
    PASS = "pass"  # noqa: S105 - a severity, not a password

    @property
    def rank(self) -> int:
        return {"blocker": 3, "warning": 2, "info": 1, "pass": 0}[self.value]


class State(StrEnum):
    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"


#: The categories that have checks.
CATEGORIES = ("dns", "directory", "source", "capacity", "target")


@dataclass(frozen=True, slots=True)
class Finding:
    check_id: str
    severity: Severity
    object_type: str  # domain | mailbox | folder | server | address | endpoint | database | wave | entry
    object_id: str
    title: str
    observed: str = ""
    expected: str = ""
    #: The raw material: the DNS answer, the server's own words, the LDAP entry.
    evidence: str = ""
    remediation: str = ""
    #: Tells apart several findings of one check about one object (a record type, a folder name).
    key: str = ""
    #: Set when a plan waiver covers this finding: its reason (and expiry).
    waiver: str | None = None

    def __post_init__(self) -> None:
        # Directory, DNS and server text: made safe once, before it is stored, printed or drawn.
        for name in ("object_id", "title", "observed", "expected", "remediation", "key"):
            object.__setattr__(self, name, safe(getattr(self, name)))
        object.__setattr__(self, "evidence", safe_lines(self.evidence))

    @property
    def fingerprint(self) -> str:
        """Stable across runs: check, object and key only, never text, counts or times."""
        raw = "\x1f".join((self.check_id, self.object_type, self.object_id.lower(), self.key))
        return hashlib.sha256(raw.encode()).hexdigest()[:16]

    @property
    def counts(self) -> bool:
        """Does it count against readiness (an unwaived blocker or warning)?"""
        return self.waiver is None and self.severity in (Severity.BLOCKER, Severity.WARNING)


@dataclass(slots=True)
class Outcome:
    """One check's run: its state and what it found."""

    check_id: str
    title: str
    category: str
    state: State
    findings: list[Finding] = field(default_factory=list)
    #: For error and skipped: why (the server's words where there are any).
    reason: str = ""
    seconds: float = 0.0

    @property
    def worst(self) -> Severity | None:
        ranked = [f.severity for f in self.findings if f.waiver is None]
        return max(ranked, key=lambda s: s.rank) if ranked else None
