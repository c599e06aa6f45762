"""What ``cutover status`` and the cockpit's proxy view show of the routing proxy: sessions open now
per backend and service, logins per second over the last minute, the latest failures with the
backend's words, and the mailboxes of on-login waves queued by their users' logins."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from runners.plan.model import Plan
from runners.state.proxy_rows import FAILED_OUTCOMES
from runners.state.store import StateStore

#: Logins per second are counted over this many seconds.
RATE_WINDOW = 60.0
#: Failures older than this are history, not news.
FAILURES_SINCE = 3600.0


def proxy_data(
    store: StateStore, plan: Plan, *, now: float | None = None, failures: int = 5
) -> dict[str, Any]:
    """The proxy's figures as plain data (``status --output json``'s ``proxy``)."""
    now = time.time() if now is None else now
    counters = store.proxy_login_counters(now - RATE_WINDOW, now + 1.0)
    outcomes: dict[str, int] = {}
    for c in counters:
        outcomes[c.outcome] = outcomes.get(c.outcome, 0) + c.count
    total = sum(outcomes.values())
    return {
        "sessions": [asdict(s) for s in store.proxy_sessions(now)],
        "logins_last_minute": total,
        "logins_per_second": round(total / RATE_WINDOW, 2),
        "outcomes_last_minute": outcomes,
        "by_backend_last_minute": [asdict(c) for c in counters],
        "failures": [asdict(f) for f in store.proxy_failures(failures, since=now - FAILURES_SINCE)],
        "queued_by_login": _queued_by_login(plan, store.queued_by_login()),
    }


def proxy_seen(data: dict[str, Any]) -> bool:
    """Has the proxy anything to show (it ran, or a wave waits for logins)?"""
    return bool(data["sessions"] or data["logins_last_minute"] or data["failures"] or data["queued_by_login"])


def proxy_lines(data: dict[str, Any]) -> list[str]:
    """``status``'s lines about the proxy (nothing when it never ran and no wave starts on login)."""
    if not proxy_seen(data):
        return []
    lines = [f"proxy sessions: {sessions_text(data['sessions'])}"]
    outcomes = data["outcomes_last_minute"]
    split = ", ".join(f"{outcomes.get(o, 0)} {o}" for o in ("accepted", *FAILED_OUTCOMES) if outcomes.get(o))
    lines.append(
        f"proxy logins: {data['logins_per_second']:.2f}/s over the last minute"
        + (f" ({split})" if split else "")
    )
    for f in data["failures"]:
        lines.append(f"proxy failure: {failure_text(f)}")
    for wave, q in data["queued_by_login"].items():
        lines.append(
            f"wave {wave} starts on login: {q['queued']} of {q['mailboxes']} mailboxes queued by logins"
        )
    return lines


def sessions_text(sessions: list[dict[str, Any]]) -> str:
    """``legacy imap 12, pop3 3; target imap 4``, or ``none open``."""
    if not sessions:
        return "none open"
    by_backend: dict[str, list[str]] = {}
    for s in sessions:
        by_backend.setdefault(s["backend"], []).append(f"{s['service']} {s['sessions']}")
    return "; ".join(f"{backend} {', '.join(parts)}" for backend, parts in by_backend.items())


def failure_text(f: dict[str, Any]) -> str:
    """``21:04:05 imap alice from 127.0.0.9 on legacy: rejected: NO [AUTHENTICATIONFAILED] ...``."""
    when = time.strftime("%H:%M:%S", time.localtime(f["ts"]))
    where = f" on {f['backend']}" if f["backend"] else ""
    detail = f": {f['detail']}" if f["detail"] else ""
    return f"{when} {f['service']} {f['user']} from {f['client']}{where}: {f['outcome']}{detail}"


def empty_proxy_data(plan: Plan) -> dict[str, Any]:
    """The figures of a store not created yet: nothing seen, on-login waves with nothing queued."""
    return {
        "sessions": [],
        "logins_last_minute": 0,
        "logins_per_second": 0.0,
        "outcomes_last_minute": {},
        "by_backend_last_minute": [],
        "failures": [],
        "queued_by_login": _queued_by_login(plan, {}),
    }


def _queued_by_login(plan: Plan, queued: dict[str, set[str]]) -> dict[str, dict[str, int]]:
    """Each on-login wave: how many of its mailboxes logins queued, of how many."""
    return {
        wave: {"queued": len(queued.get(wave, ())), "mailboxes": len(plan.wave(wave))}
        for wave in plan.waves
        if plan.starts_on_login(wave)
    }
