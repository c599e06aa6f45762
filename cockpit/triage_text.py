"""The helpdesk triage of one user in words, most wanted first: the cockpit's ``u`` view and
``cutover triage`` print the same text."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any

from checks.triage import Triage
from cockpit.format import state_label

MARKS = {True: "ok  ", False: "FAIL", None: "-   "}
#: Messages listed as missing at most (the count says how many more).
MISSING_SHOWN = 500


def late_mail(result: Triage) -> str:
    """The settle step's count of late mail, or why there is none yet."""
    if result.late_messages is not None:
        return f"{result.late_messages:,} message(s), delivered to the legacy after the switch and copied"
    if result.served_by == "target":
        return "none counted yet (the wave is not settled)"
    return "none: the wave is not switched"


def render(result: Triage) -> str:
    """The answer, most wanted first: where to log in, the migration, the last failure, findings,
    then the live checks, folders and every message missing on the target with its reason."""
    entry = result.entry
    if entry is None:
        return "\n".join(f"{MARKS[s.ok]} {s.name:<16} {s.detail}" for s in result.steps)
    lines = [f"{result.query}: mailbox {entry.source} → {entry.target}, wave {entry.wave}"]
    if result.found_as:
        lines.append(f"  ({result.found_as})")
    lines += ["", "LOG IN TO NOW", f"  {result.log_in_to}", "", "MIGRATION"]
    row = result.row
    if row is None:
        lines.append("  not started: no run has touched this mailbox yet")
    else:
        done, total = row.done_of_total
        unopened = f", {row.folder_errors} folder(s) could not be opened" if row.folder_errors else ""
        lines.append(
            f"  {state_label(row.state)}: {done:,} of {total:,} messages copied, {row.failed} failed, "
            f"{row.skipped} skipped{unopened}"
        )
    if row is not None:
        lines.append(f"  {result.completeness}")
    lines.append(f"  late mail caught for wave {entry.wave}: {late_mail(result)}")
    lines += ["", "LAST FAILURE, in the server's words", f"  {result.last_failure or 'none recorded'}"]
    lines += ["", f"READINESS FINDINGS about this user ({len(result.findings)})"]
    lines += [f"  {f.severity:<8} {f.check_id} {f.title}: {f.observed or '-'}" for f in result.findings] or [
        "  none"
    ]
    if result.proxy_logins:  # a user who never came through the proxy: nothing to say about it
        lines += ["", *proxy_text(result)]
    lines += ["", "CHECKED NOW"] + [f"  {MARKS[s.ok]} {s.name:<16} {s.detail}" for s in result.steps]
    if result.detail is not None and result.detail.folders:
        lines += ["", "FOLDERS                           copied skipped failed pending  note"]
        for f in result.detail.folders:
            note = f.error or (f"excluded: {f.excluded}" if f.excluded else "")
            lines.append(
                f"  {f.source[:30]:<30} {f.copied:>8} {f.skipped:>7} {f.failed:>6} {f.pending:>7}  {note}"
            )
    if result.verify is not None and result.verify.differences:
        differences = result.verify.differences
        lines += ["", f"NOT ON THE TARGET, and why ({len(differences)})"]
        lines += [
            f"  {d.bucket:<9} {d.folder} UID {d.uid} ({d.size} bytes): {d.reason}"
            for d in differences[:MISSING_SHOWN]
        ]
        if len(differences) > MISSING_SHOWN:
            lines.append(f"  … and {len(differences) - MISSING_SHOWN} more (cutover verify lists them all)")
    return "\n".join(lines)


def as_json(result: Triage) -> dict[str, Any]:
    """``cutover triage --output json``: the answers by name (times as epoch seconds and ISO text)."""
    entry = result.entry
    row = result.row
    since = result.served_since
    return {
        "query": result.query,
        "mailbox": None if entry is None else {"source": entry.source, "target": entry.target, "wave": entry.wave},
        "found_as": result.found_as or None,
        "served_by": result.served_by if entry is not None else None,
        "served_since": since,
        "served_since_text": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(since)) if since else None,
        "log_in_to": result.log_in_to or None,
        "stage": result.stage,
        "complete": result.complete,
        "completeness": result.completeness or None,
        "copied": None if row is None else row.done_of_total[0],
        "holds": None if row is None else row.done_of_total[1],
        "failed": None if row is None else row.failed,
        "skipped": None if row is None else row.skipped,
        "late_messages": result.late_messages,
        "last_failure": result.last_failure,
        "findings": [{"severity": f.severity, "check": f.check_id, "title": f.title, "observed": f.observed}
                     for f in result.findings],
        "checked_now": [asdict(s) for s in result.steps],
        "proxy_route": None if result.proxy_route is None else asdict(result.proxy_route),
        "proxy_logins": [asdict(r) for r in result.proxy_logins],
    }  # fmt: skip


def proxy_text(result: Triage) -> list[str]:
    """The route the proxy gave the user (with the login rewritten for the backend) and their last
    logins through it: time, service, client address, backend, result in the backend's words."""
    route = result.proxy_route
    lines = ["THROUGH THE PROXY"]
    if route is None:
        lines.append("  route: no login through the proxy recorded")
    else:
        why = f": {route.reason}" if route.reason else ""
        lines.append(
            f"  route: {route.backend} as {route.backend_login} (decided by {route.decided_by}{why}), "
            f"at the last login {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(route.at))}"
        )
    lines.append(
        f"  last logins ({len(result.proxy_logins)})" if result.proxy_logins else "  last logins: none"
    )
    for r in result.proxy_logins:
        when = time.strftime("%m-%d %H:%M:%S", time.localtime(r.ts))
        detail = f": {r.detail}" if r.detail else ""
        lines.append(f"  {when} {r.service:<10} {r.client:<15} {r.backend or '-':<8} {r.outcome}{detail}")
    return lines
