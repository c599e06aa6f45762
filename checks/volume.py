"""What the source survey says will be moved, in the terms the capacity checks compare.

A mailbox that could not be surveyed, or a folder that could not be listed, makes every total a
lower bound: the checks say so instead of passing on numbers they know are short.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from checks.survey import MailboxSurvey


def human_bytes(size: float) -> str:
    """``1.5 MiB``: binary units, as quotas and SIZE limits are usually set."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if abs(size) < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def exact_bytes(size: int) -> str:
    """``1,572,864 bytes (1.5 MiB)``: exact for comparisons, readable for people."""
    return f"{size:,} bytes ({human_bytes(size)})" if size >= 1024 else f"{size:,} bytes"


def survey_gap(box: MailboxSurvey) -> str | None:
    """Why this mailbox's numbers are incomplete, or None when every folder was listed."""
    if box.error is not None:
        return f"not surveyed: {box.error}"
    failed = [f.folder.display for f in box.folders if f.error is not None]
    if failed:
        return f"{len(failed)} folder(s) could not be listed ({', '.join(failed[:5])})"
    return None


@dataclass(slots=True)
class Volume:
    """Totals over a set of mailboxes, with the ones whose numbers are incomplete."""

    mailboxes: int = 0
    messages: int = 0
    bytes: int = 0
    gaps: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        return not self.gaps

    def gap_note(self) -> str:
        shown = "; ".join(self.gaps[:3]) + ("; ..." if len(self.gaps) > 3 else "")
        return f"a lower bound: {len(self.gaps)} mailbox(es) incomplete ({shown})"


def total(boxes: Iterable[MailboxSurvey]) -> Volume:
    out = Volume()
    for box in boxes:
        out.mailboxes += 1
        out.messages += box.messages
        out.bytes += box.bytes
        gap = survey_gap(box)
        if gap is not None:
            out.gaps.append(f"{box.entry.source}: {gap}")
    return out
