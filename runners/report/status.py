"""``cutover status``: runs, mailboxes and every message that was not copied, with its reason."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runners.plan.model import Plan
from runners.report.snapshot import LEDGER_COUNTS
from runners.state.store import StateStore


def status_data(
    plan: Plan, *, wave: str | None = None, mailboxes: Sequence[str] = (), failures: bool = False
) -> dict[str, Any]:
    if not plan.state_db.exists():
        return {
            "state_db": str(plan.state_db),
            "runs": [],
            "mailboxes": [],
            "not_copied": [],
            "planned": len(plan.mailboxes),
        }
    store = StateStore(plan.state_db)
    store.mark_dead_runs()
    where, params = ["1 = 1"], []
    if wave:
        where.append("mb.wave = ?")
        params.append(wave)
    if mailboxes:
        where.append(f"mb.source IN ({','.join('?' * len(mailboxes))})")
        params.extend(mailboxes)
    clause = " AND ".join(where)
    runs = [
        dict(r)
        for r in store.query(
            "SELECT id, wave, kind, status, started, ended, pid, host, workers FROM runs "
            + ("WHERE wave = ? " if wave else "")
            + "ORDER BY id DESC LIMIT 10",
            (wave,) if wave else (),
        )
    ]
    rows = store.query(
        f"SELECT mb.id, mb.source, mb.target, mb.wave, mb.state, mb.error, mb.error_kind, mb.updated, {LEDGER_COUNTS} "
        f"FROM mailboxes mb LEFT JOIN folders f ON f.mailbox_id = mb.id "
        f"LEFT JOIN messages m ON m.folder_id = f.id WHERE {clause} GROUP BY mb.id ORDER BY mb.source",
        params,
    )
    folder_errors = store.query(
        "SELECT mb.source, f.source_path, f.error FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id "
        f"WHERE f.error IS NOT NULL AND {clause} ORDER BY mb.source, f.source_path",
        params,
    )
    data: dict[str, Any] = {
        "state_db": str(plan.state_db),
        "planned": len([m for m in plan.mailboxes if not wave or m.wave == wave]),
        "runs": runs,
        "mailboxes": [dict(r) for r in rows],
        "folder_errors": [dict(r) for r in folder_errors],
    }
    if failures:
        data["not_copied"] = _not_copied(store, clause, params)
    store.close()
    return data


def _not_copied(store: StateStore, clause: str, params: Sequence[object]) -> list[dict[str, Any]]:
    """Every message not copied, each with its attempts (run, time, outcome, the server's words)."""
    history: dict[tuple[int, int, str], list[dict[str, Any]]] = {}
    for a in store.query(
        "SELECT a.folder_id, a.uidvalidity, a.src_key, a.run_id, a.at, a.status, a.reason "
        "FROM message_attempts a JOIN folders f ON f.id = a.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id "
        f"WHERE {clause} ORDER BY a.id",
        params,
    ):
        attempt = {"run_id": a["run_id"], "at": a["at"], "status": a["status"], "reason": a["reason"]}
        history.setdefault((a["folder_id"], a["uidvalidity"], a["src_key"]), []).append(attempt)
    rows = store.query(
        "SELECT mb.source AS mailbox, f.source_path AS folder, m.folder_id, m.uidvalidity, m.src_key, "
        "m.src_uid AS uid, m.size, m.internaldate, m.status, m.reason, m.attempts FROM messages m "
        "JOIN folders f ON f.id = m.folder_id "
        f"JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE m.status != 'copied' AND {clause} "
        "ORDER BY mb.source, f.source_path, m.src_uid",
        params,
    )
    out = []
    for r in rows:
        row = dict(r)
        row["history"] = history.get((row.pop("folder_id"), r["uidvalidity"], row.pop("src_key")), [])
        out.append(row)
    return out


def status_text(data: dict[str, Any], *, failures: bool = False) -> str:
    lines = [f"state: {data['state_db']}"]
    if not data["runs"]:
        lines.append(f"No run yet. {data['planned']} mailboxes planned.")
        return "\n".join(lines)
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
