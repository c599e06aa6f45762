"""``cutover status``: runs, mailboxes and every message that was not copied, with its reason.

It opens the store read-only: an account that may read the state directory but not write it can
run it, while a runner works.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from runners.plan.model import Plan
from runners.safe_text import safe_data
from runners.state.open_store import open_store, store_exists, store_location
from runners.state.read_models.proxy import empty_proxy_data, proxy_data, proxy_lines


def status_data(
    plan: Plan, *, wave: str | None = None, mailboxes: Sequence[str] = (), failures: bool = False
) -> dict[str, Any]:
    if not store_exists(plan):
        return {
            "state_db": store_location(plan),
            "runs": [],
            "mailboxes": [],
            "not_copied": [],
            "planned": len(plan.mailboxes),
            "proxy": empty_proxy_data(plan),
        }
    store = open_store(plan, read_only=True)
    try:
        data: dict[str, Any] = {
            "state_db": store_location(plan),
            "planned": len([m for m in plan.mailboxes if not wave or m.wave == wave]),
            "runs": [asdict(r) for r in store.recent_runs(wave)],
            "mailboxes": [asdict(r) for r in store.mailbox_ledger_counts(wave, mailboxes)],
            "folder_errors": [asdict(r) for r in store.folder_errors(wave, mailboxes)],
            "window": [asdict(w) for w in store.wave_standings([wave] if wave else plan.waves)],
            "pacing": [
                asdict(r) | {"backoff_seconds": round(r.backoff_left(), 1)}
                for r in store.running_pacing(wave)
            ],
            "proxy": proxy_data(store, plan),
            "hosts": [asdict(h) for h in store.fleet_hosts()],
        }
        if failures:
            data["not_copied"] = [asdict(r) for r in store.not_copied(wave, mailboxes)]
    finally:
        store.close()
    return data


def status_text(data: dict[str, Any], *, failures: bool = False) -> str:
    data = safe_data(data)  # folder names and server texts: each cell one line, no control obeyed
    lines = [f"state: {data['state_db']}"]
    if not data["runs"]:
        lines.append(f"No run yet. {data['planned']} mailboxes planned.")
        return "\n".join(lines + proxy_lines(data["proxy"]))
    last = data["runs"][0]
    lines.append(f"last run: #{last['id']} wave {last['wave']} ({last['kind']}) {last['status']}")
    lines.append("")
    lines.append(
        f"{'mailbox':<36} {'wave':<10} {'state':<9} {'copied':>8} {'skipped':>8} {'failed':>7}  error"
    )
    for m in data["mailboxes"]:
        error = f"{m['error_kind']}: {m['error']}" if m["error"] else ""
        lines.append(
            f"{m['source'][:36]:<36} {m['wave'][:10]:<10} {m['state']:<9} {m['copied']:>8} "
            f"{m['skipped']:>8} {m['failed']:>7}  {error}"
        )
    for w in data.get("window", []):
        if w["stage"] != "copying" or w["last_problem"]:  # a wave the window hasn't touched: as before
            lines.append(window_line(w))
    for p in data.get("pacing", []):
        lines.append(pacing_line(p))
    lines.extend(proxy_lines(data["proxy"]))
    lines.extend(host_line(h) for h in data.get("hosts", []) if h["state"] != "stopped")
    for f in data.get("folder_errors", []):
        lines.append(f"folder not copied: {f['source']} {f['source_path']}: {f['error']}")
    if failures:
        lines.append("")
        rows = data.get("not_copied", [])
        lines.append(f"{len(rows)} message(s) not copied:" if rows else "Every listed message was copied.")
        for r in rows:
            lines.append(
                f"  {r['mailbox']} {r['folder']} UID {r['uid']} ({r['size']} bytes) "
                f"{r['status']}: {r['reason']}"
            )
    return "\n".join(lines)


def window_line(w: dict[str, Any]) -> str:
    """Where a wave stands in its cutover window (runners/window), and its last step that didn't complete."""
    since = (
        f" since {time.strftime('%Y-%m-%d %H:%M', time.localtime(w['since']))} by {w['by']}"
        if w["since"]
        else ""
    )
    problem = f"; last attempt: {w['last_problem']}" if w["last_problem"] else ""
    return f"wave {w['wave']}: {w['stage']}{since}{problem}"


def pacing_line(p: dict[str, Any]) -> str:
    """One throttled scope of a running wave: the back-off in force (in the service's words) and the
    budget used, e.g. ``pacing graph:ann@example.com: waiting 12 s (429 Retry-After: 12); requests
    812/10000 per window, upload 40/150 MB, in flight 3/4, 7 back-offs, 95 s waited``."""
    parts: list[str] = []
    if p["backoff_seconds"] > 0:
        parts.append(f"waiting {p['backoff_seconds']:.0f} s ({p['backoff_reason'] or 'the service asked'})")
    budget = []
    if p["request_budget"]:
        budget.append(f"requests {p['requests_in_window']}/{p['request_budget']} per window")
    if p["byte_budget"]:
        budget.append(f"upload {p['bytes_in_window'] / 1e6:.0f}/{p['byte_budget'] / 1e6:.0f} MB")
    if p["concurrency"]:
        budget.append(f"in flight {p['in_flight']}/{p['concurrency']}")
    budget.append(f"{p['back_offs']} back-off(s), {p['waited_seconds']:.0f} s waited")
    return f"pacing {p['scope']}: " + "; ".join([*parts, ", ".join(budget)])


def host_line(h: dict[str, Any]) -> str:
    """One runner of the fleet: its state, last heartbeat and the mailboxes it holds."""
    ago = max(0.0, time.time() - h["heartbeat"])
    held = ", ".join(h["mailboxes"]) or "none"
    return f"runner {h['name']} ({h['host']} pid {h['pid']}): {h['state']}, heartbeat {ago:.0f} s ago; mailboxes: {held}"
