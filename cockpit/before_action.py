"""What the cockpit says before an action, from the latest snapshot: whether a control would do
anything at all (``P`` on a finished wave), and the counts and readiness blockers that the launch and
retry confirmations list. Pure functions: no widget, no store."""

from __future__ import annotations

from collections.abc import Sequence

from runners.plan.model import Plan
from runners.state.read_models.snapshot import Snapshot, WaveSummary

#: Mailboxes named in a confirmation's blocker line; the rest are counted.
NAMED = 6


def _wave(snapshot: Snapshot | None, wave: str | None) -> WaveSummary | None:
    return next((w for w in snapshot.waves if w.name == wave), None) if snapshot else None


def nothing_to(snapshot: Snapshot | None, action: str, wave: str | None, mailbox: str | None) -> str | None:
    """Why ``action`` (pause, resume, cancel, retry) on this wave or mailbox (of ``wave``) would do
    nothing, or None when it may do something (or there is no snapshot yet to tell)."""
    summary = _wave(snapshot, wave)
    if snapshot is None or summary is None:
        return None
    row = snapshot.mailbox(mailbox) if mailbox else None
    scope = f"mailbox {mailbox}" if mailbox else f"wave {summary.name}"
    if action in ("pause", "cancel"):
        if not summary.running:
            last = f" (its last run ended {summary.last_run_status})" if summary.last_run_status else ""
            return f"{scope} is not running{last}: nothing to {action}"
        if row is not None and row.state not in ("running", "pending", "paused"):
            return f"{scope} is {row.state}: nothing to {action}"
    elif action == "resume":
        paused = row.state == "paused" if row is not None else summary.states.get("paused", 0) > 0
        if not paused:
            return f"nothing is paused in {scope}: nothing to resume"
    elif action == "retry":
        failed = (
            row.failed + row.skipped + (row.state == "failed")
            if row is not None
            else summary.failed + summary.skipped + summary.states.get("failed", 0)
        )
        if not failed:
            return f"nothing failed or was skipped in {scope}: nothing to retry"
    return None


def retry_counts(snapshot: Snapshot | None, wave: str, mailbox: str | None) -> list[str]:
    """What a retry would take on: messages (failed, skipped) and mailboxes that failed as a whole."""
    row = snapshot.mailbox(mailbox) if snapshot and mailbox else None
    summary = _wave(snapshot, wave)
    if row is not None:
        failed, skipped, mailboxes = row.failed, row.skipped, int(row.state == "failed")
    elif summary is not None and not mailbox:
        failed, skipped, mailboxes = summary.failed, summary.skipped, summary.states.get("failed", 0)
    else:
        return []
    return [
        f"messages to retry: {failed + skipped:,} ({failed:,} failed, {skipped:,} skipped); "
        f"mailboxes that failed as a whole: {mailboxes:,}"
    ]


def blocker_lines(snapshot: Snapshot | None, plan: Plan, sources: Sequence[str]) -> list[str]:
    """The readiness blockers of these mailboxes, by name, and how many blockers concern every wave."""
    readiness = snapshot.readiness if snapshot else None
    if readiness is None:
        return ["readiness: never checked (`cutover check`, or r then r in the cockpit)"]
    mine = readiness.blockers_of(sources)
    elsewhere = readiness.blockers_elsewhere(m.source for m in plan.mailboxes)
    if not mine and not elsewhere:
        return ["readiness: no blocker about these mailboxes"]
    lines = []
    if mine:
        named = [f"{source} ({', '.join(checks)})" for source, checks in list(mine.items())[:NAMED]]
        more = f" and {len(mine) - NAMED} more" if len(mine) > NAMED else ""
        lines.append(f"BLOCKERS: {len(mine):,} mailbox(es) blocked: " + ", ".join(named) + more)
    if elsewhere:
        lines.append(
            f"BLOCKERS: {elsewhere:,} blocker(s) not about one mailbox (DNS, servers): see readiness"
        )
    return lines
