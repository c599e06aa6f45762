"""The wave's report for the customer's sign-off (the closed step): JSON and Markdown from the store.

What it holds: the wave's mailboxes with messages and bytes copied; every exception with its reason
(messages failed, skipped, pending or waived, from the ledger with the server's or operator's words;
folders left out by the plan; folders a pass could not copy); the timings of each step of the window
and who did it, as the window recorded them (``StepRecord``). Every text from outside passes through
``runners.safe_text`` in the JSON and is escaped for Markdown in the Markdown.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from runners.plan.model import Plan
from runners.safe_text import markdown_literal as md
from runners.safe_text import safe_data
from runners.state.open_store import open_store
from runners.state.store import StateStore


@dataclass(frozen=True, slots=True)
class StepRecord:
    """One step of the window as the window recorded it: name, epoch seconds, operator, parameters."""

    step: str
    started: float
    ended: float | None
    who: str
    parameters: Mapping[str, Any] = field(default_factory=dict)


def wave_report(
    plan: Plan,
    wave: str,
    steps: Sequence[StepRecord],
    *,
    store: StateStore | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The report as JSON-ready data (every string safe). Reads the store, never writes it."""
    store = store or open_store(plan, read_only=True)
    counts = store.mailbox_ledger_counts(wave)
    mailboxes: list[dict[str, Any]] = []
    exceptions: list[dict[str, Any]] = []
    for row in counts:
        mailboxes.append(
            {
                "source": row.source,
                "target": row.target,
                "state": str(row.state),
                "messages": row.copied,
                "bytes": row.bytes_copied,
                "failed": row.failed,
                "skipped": row.skipped,
                "pending": row.pending,
            }
        )
        exceptions += _exceptions(store, row.source)
    report = {
        "wave": wave,
        "plan": str(plan.path),
        "generated": _iso(time.time() if now is None else now),
        "totals": {
            "mailboxes": len(mailboxes),
            "messages": sum(m["messages"] for m in mailboxes),
            "bytes": sum(m["bytes"] for m in mailboxes),
            "exceptions": len(exceptions),
        },
        "mailboxes": mailboxes,
        "exceptions": exceptions,
        "steps": [_step(s) for s in steps],
    }
    return dict(safe_data(report))


def _exceptions(store: StateStore, source: str) -> list[dict[str, Any]]:
    detail = store.mailbox_detail(source)
    out: list[dict[str, Any]] = []
    for f in detail.folders:
        if f.excluded:
            out.append(
                {"mailbox": source, "kind": "folder not copied", "folder": f.source, "reason": f.excluded}
            )
        if f.error:
            out.append({"mailbox": source, "kind": "folder failed", "folder": f.source, "reason": f.error})
    for issue in detail.issues:
        out.append(
            {
                "mailbox": source,
                "kind": f"message {issue.status}",
                "folder": issue.folder,
                "uid": issue.uid,
                "bytes": issue.size,
                "reason": issue.reason or "",
            }
        )
    return out


def _step(record: StepRecord) -> dict[str, Any]:
    return {
        "step": record.step,
        "started": _iso(record.started),
        "ended": None if record.ended is None else _iso(record.ended),
        "seconds": None if record.ended is None else round(record.ended - record.started, 3),
        "who": record.who,
        "parameters": dict(record.parameters),
    }


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def render_json(report: Mapping[str, Any]) -> str:
    return json.dumps(report, indent=2, sort_keys=False, ensure_ascii=False)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The sign-off document: every value from outside escaped (``safe_text.markdown_literal``), numbers as they are."""
    t = report["totals"]
    out = [
        f"# Wave {md(report['wave'])}: cutover report",
        "",
        f"Generated {report['generated']} from {md(report['plan'])}.",
        "",
        f"**{t['mailboxes']} mailboxes**, {t['messages']} messages, {_size(t['bytes'])} copied; "
        f"{t['exceptions']} exceptions.",
        "",
        "## Mailboxes",
        "",
        "| mailbox | target | state | messages | bytes | failed | skipped |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    out += [
        f"| {md(m['source'])} | {md(m['target'])} | {md(m['state'])} | {m['messages']} | {m['bytes']} | "
        f"{m['failed']} | {m['skipped']} |"
        for m in report["mailboxes"]
    ]
    out += ["", "## Exceptions", ""]
    if report["exceptions"]:
        out += ["| mailbox | what | folder | message | reason |", "|---|---|---|---|---|"]
        out += [
            f"| {md(e['mailbox'])} | {md(e['kind'])} | {md(e['folder'])} | {_message(e)} | {md(e['reason'])} |"
            for e in report["exceptions"]
        ]
    else:
        out.append("None: every message of every mailbox was copied.")
    out += [
        "",
        "## Steps",
        "",
        "| step | started | ended | seconds | who | parameters |",
        "|---|---|---|---:|---|---|",
    ]
    out += [
        f"| {md(s['step'])} | {s['started']} | {s['ended'] or 'not ended'} | "
        f"{'' if s['seconds'] is None else s['seconds']} | {md(s['who'])} | {_parameters(s['parameters'])} |"
        for s in report["steps"]
    ]
    return "\n".join(out) + "\n"


def _message(exception: Mapping[str, Any]) -> str:
    if "uid" not in exception:
        return ""
    return f"UID {exception['uid']} ({_size(exception['bytes'])})"


def _parameters(parameters: Mapping[str, Any]) -> str:
    return md(", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in parameters.items()))


def _size(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")
