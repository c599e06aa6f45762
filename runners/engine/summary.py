"""The end-of-run verdict, in the spirit of imapsync's, as text and as JSON-ready data."""

from __future__ import annotations

from typing import Any

from runners.engine.stats import MailboxStats
from runners.engine.wave import RunResult
from runners.safe_text import safe

MB = 1_000_000


def summary_data(result: RunResult) -> dict[str, Any]:
    totals = result.stats.totals()
    seconds = max(result.seconds, 1e-9)
    return {
        "run_id": result.run_id,
        "wave": result.wave,
        "kind": result.kind,
        "status": result.status,
        "seconds": round(result.seconds, 3),
        "totals": totals,
        "messages_per_second": round(totals["copied"] / seconds, 1),
        "megabytes_per_second": round(totals["bytes_copied"] / MB / seconds, 2),
        "mailboxes": [m.as_dict() for m in result.stats.mailboxes.values()],
    }


def summary_text(result: RunResult) -> str:
    t = result.stats.totals()
    seconds = max(result.seconds, 1e-9)
    lines = [
        f"Run {result.run_id}: {result.kind} pass of wave {result.wave!r}, {result.status}, "
        f"{result.seconds:.1f} s, {_plural(t['mailboxes'], 'mailbox', 'mailboxes')} ({t['mailboxes_ok']} ok, "
        f"{t['mailboxes_partial']} partial, {t['mailboxes_failed']} failed)",
        f"Messages on the source:       {t['messages_total']:>9}",
        f"Copied:                       {t['copied']:>9}  ({t['bytes_copied'] / MB:.1f} MB, "
        f"{t['copied'] / seconds:.0f} msg/s, {t['bytes_copied'] / MB / seconds:.1f} MB/s)",
        f"Already on the target:        {t['duplicates_avoided']:>9}  (not copied again; {t['already_present']} per "
        f"the ledger, {t['matched_by_content']} matched by content)",
        f"Skipped (with reason):        {t['skipped']:>9}",
        f"Failed (with reason):         {t['failed']:>9}",
        f"Flags synced:                 {t['flags_synced']:>9}",
        f"Reconnects:                   {t['reconnects']:>9}",
    ]
    for mailbox in result.stats.mailboxes.values():
        lines.extend(_mailbox_lines(mailbox))
    lines.append("")
    lines.append(_verdict(t))
    return "\n".join(lines)


def _plural(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _mailbox_lines(m: MailboxStats) -> list[str]:
    out = [
        "",
        f"{m.source} -> {m.target}: {m.state}" + (f" ({m.error_kind}: {safe(m.error)})" if m.error else ""),
    ]
    shown = [f for f in m.folders if not f.unchanged or f.error or f.excluded]
    if not shown:
        if m.folders:
            out.append(f"  {len(m.folders)} folders, all unchanged since the last pass")
        return out
    out.append(
        f"  {'folder':<32} {'source':>7} {'target':>7} {'copied':>7} {'skipped':>7} {'failed':>7}  note"
    )
    for f in shown:
        target = "-" if f.target_messages is None else str(f.target_messages)
        note = safe(f.error or (f"excluded: {f.excluded}" if f.excluded else ""))
        if not note and f.target_messages is not None and f.target_messages != f.source_messages:
            note = f"target-source = {f.target_messages - f.source_messages:+d}"
        out.append(
            f"  {safe(f.source)[:32]:<32} {f.source_messages:>7} {target:>7} {f.copied:>7} {f.skipped:>7} "
            f"{f.failed:>7}  {note}"
        )
    hidden = len(m.folders) - len(shown)
    if hidden:
        out.append(f"  ... and {hidden} unchanged folders")
    return out


def _verdict(t: dict[str, int]) -> str:
    missing = t["skipped"] + t["failed"]
    if t["mailboxes_failed"]:
        return (
            f"Verdict: {t['mailboxes_failed']} mailbox(es) could not be migrated (see above); "
            f"{missing} message(s) not copied, each with its reason in `cutover status`."
        )
    if missing:
        return (
            f"Verdict: {missing} message(s) were not copied, each recorded with its reason; "
            "list them with `cutover status --failures`."
        )
    return (
        f"Verdict: every one of the {t['messages_total']} source messages is on the target "
        f"({t['copied']} copied now, {t['duplicates_avoided']} already there). Run `cutover verify` to prove it."
    )
