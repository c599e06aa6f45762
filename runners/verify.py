"""``cutover verify``: compare source and target folder by folder and explain every difference.

Each source message ends in exactly one bucket: ``ok`` (on the target; with ``--deep`` also
byte-identical by SHA-256), ``skipped`` / ``failed`` (with the ledger's reason), ``waived`` (an
operator decided it is not copied, with the reason), ``new`` (arrived
on the source after the last pass: the next delta copies it), ``excluded`` (folder left out by the
plan) or ``lost`` (no explanation: a defect). The report is ``ok`` when nothing is lost, skipped,
failed or different; ``new``, ``excluded`` and ``waived`` are reported but don't fail it.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from runners.connectors.base import SourceSession, TargetSession
from runners.engine.sessions import ConnectionCaps, capped, open_source, open_target
from runners.engine.wave import select_mailboxes
from runners.errors import MigrationError, ProtocolError
from runners.folders import FolderMapping, plan_folders
from runners.model import FetchedMessage, MessageMeta
from runners.plan.model import MailboxEntry, Plan
from runners.state.store import StateStore

BUCKETS = ("ok", "new", "excluded", "waived", "skipped", "failed", "lost", "different")


@dataclass(slots=True)
class Difference:
    folder: str
    uid: int
    size: int
    bucket: str
    reason: str


@dataclass(slots=True)
class FolderCheck:
    source: str
    target: str
    source_messages: int = 0
    source_bytes: int = 0
    target_messages: int = 0
    target_bytes: int = 0
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    #: Target messages no ledger row accounts for (delivered straight to the target, another tool).
    extra_on_target: int = 0
    error: str | None = None
    excluded: str | None = None


@dataclass(slots=True)
class MailboxCheck:
    source: str
    target: str
    folders: list[FolderCheck] = field(default_factory=list)
    differences: list[Difference] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        bad = ("skipped", "failed", "lost", "different")
        return self.error is None and not any(f.error or any(f.counts[b] for b in bad) for f in self.folders)


@dataclass(slots=True)
class VerifyReport:
    wave: str
    deep: bool
    mailboxes: list[MailboxCheck]

    @property
    def incomplete(self) -> bool:
        return any(m.error for m in self.mailboxes)

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.mailboxes)

    def totals(self) -> dict[str, int]:
        out = dict.fromkeys(BUCKETS, 0)
        for m in self.mailboxes:
            for f in m.folders:
                for k, v in f.counts.items():
                    out[k] += v
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "wave": self.wave,
            "deep": self.deep,
            "ok": self.ok,
            "incomplete": self.incomplete,
            "totals": self.totals(),
            "mailboxes": [asdict(m) | {"ok": m.ok} for m in self.mailboxes],
        }


def verify_wave(
    plan: Plan, wave: str, *, only: Sequence[str] = (), deep: bool = False, workers: int | None = None
) -> VerifyReport:
    entries = select_mailboxes(plan, wave, only)
    if not plan.state_db.exists():
        raise MigrationError(f"no state store at {plan.state_db}: nothing has been migrated yet")
    store = StateStore(plan.state_db)
    caps = ConnectionCaps()

    def one(entry: MailboxEntry) -> MailboxCheck:
        try:
            return _verify_mailbox(plan, store, caps, entry, deep)
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=max(1, min(workers or plan.workers, len(entries)))) as pool:
        checks = list(pool.map(one, entries))
    return VerifyReport(wave, deep, checks)


def _verify_mailbox(
    plan: Plan, store: StateStore, caps: ConnectionCaps, entry: MailboxEntry, deep: bool
) -> MailboxCheck:
    check = MailboxCheck(entry.source, entry.target)
    rows = store.query("SELECT id FROM mailboxes WHERE source = ?", (entry.source,))
    if not rows:
        check.error = "never migrated: no run has touched this mailbox"
        return check
    mailbox_id = int(rows[0]["id"])
    src_sem, dst_sem = caps.semaphore(plan.source), caps.semaphore(plan.target)
    source: SourceSession | None = None
    target: TargetSession | None = None
    try:
        source = capped(src_sem, lambda: open_source(plan.source, entry))
        target = capped(dst_sem, lambda: open_target(plan.target, entry))
        mappings = plan_folders(
            source.list_folders(),
            plan.folders,
            target_separator=target.separator,
            target_prefix=target.prefix,
            target_special=target.special_folders(),
        )
        claimed_by_target: dict[str, set[int]] = {}
        for mapping in mappings:
            if not mapping.source.selectable:
                continue
            check.folders.append(
                _verify_folder(store, source, target, mailbox_id, mapping, deep, check, claimed_by_target)
            )
    except (ProtocolError, MigrationError) as exc:
        check.error = str(exc)
    finally:
        if source is not None:
            source.close()
            src_sem.release()
        if target is not None:
            target.close()
            dst_sem.release()
    return check


def _verify_folder(
    store: StateStore,
    source: SourceSession,
    target: TargetSession,
    mailbox_id: int,
    mapping: FolderMapping,
    deep: bool,
    check: MailboxCheck,
    claimed_by_target: dict[str, set[int]],
) -> FolderCheck:
    result = FolderCheck(mapping.source.display, mapping.target_wire, excluded=mapping.excluded)
    try:
        state, metas = source.list_messages(mapping.source)
    except ProtocolError as exc:
        result.error = f"source: {exc}"
        return result
    result.source_messages = len(metas)
    result.source_bytes = sum(m.size for m in metas if m.size > 0)
    if mapping.excluded is not None:
        result.counts["excluded"] = len(metas)
        return result
    rows = store.query(
        "SELECT id, uidnext, uidvalidity FROM folders WHERE mailbox_id = ? AND source_name = ?",
        (mailbox_id, mapping.source.raw_name),
    )
    ledger = store.ledger(int(rows[0]["id"]), state.uidvalidity) if rows else {}
    synced_uidnext = int(rows[0]["uidnext"]) if rows and rows[0]["uidnext"] is not None else None
    try:
        target_sizes = target.list_sizes(mapping.target_wire)
    except ProtocolError as exc:
        result.error = f"target: {exc}"
        return result
    result.target_messages = len(target_sizes)
    result.target_bytes = sum(target_sizes.values())
    claimed = claimed_by_target.setdefault(mapping.target_wire, set())
    target_digests: dict[int, bytes] = {}
    source_digests: dict[str, bytes] = {}
    if deep:
        target_digests = {uid: digest for uid, _, digest in target.fetch_digests(mapping.target_wire, 1)}
        for item in source.fetch(mapping.source, metas):
            if isinstance(item, FetchedMessage):
                source_digests[item.meta.key] = hashlib.sha256(item.body).digest()
    unmapped_copies: list[MessageMeta] = []
    for meta in metas:
        entry = ledger.get(meta.key)
        bucket, reason = "ok", ""
        if entry is None:
            if synced_uidnext is None or meta.uid >= synced_uidnext:
                bucket, reason = "new", "arrived on the source after the last pass; the next delta copies it"
            else:
                bucket, reason = "lost", "on the source but not in the ledger"
        elif entry.status in ("skipped", "failed", "waived"):
            bucket, reason = entry.status, entry.reason or ""
        elif entry.status == "pending":
            bucket, reason = "lost", "an interrupted APPEND not yet reconciled; run the wave again"
        elif entry.target_uid is None:
            unmapped_copies.append(meta)
            continue
        elif entry.target_uid not in target_sizes:
            bucket = "lost"
            reason = f"copied to target UID {entry.target_uid}, which is no longer on the target"
        else:
            claimed.add(entry.target_uid)
            if deep:
                src, dst = source_digests.get(meta.key), target_digests.get(entry.target_uid)
                if src is None:
                    bucket, reason = "different", "the source could not deliver the message for comparison"
                elif src != dst:
                    bucket, reason = (
                        "different",
                        f"target UID {entry.target_uid} differs from the source bytes",
                    )
        result.counts[bucket] += 1
        if bucket != "ok":
            check.differences.append(Difference(mapping.source.display, meta.uid, meta.size, bucket, reason))
    if unmapped_copies:
        _verify_by_content(
            unmapped_copies,
            target_sizes,
            claimed,
            source_digests,
            target_digests,
            result,
            check,
            mapping.source.display,
            deep,
        )
    result.extra_on_target = len(set(target_sizes) - claimed)
    return result


def _verify_by_content(
    metas: list[MessageMeta],
    target_sizes: dict[int, int],
    claimed: set[int],
    source_digests: dict[str, bytes],
    target_digests: dict[int, bytes],
    result: FolderCheck,
    check: MailboxCheck,
    folder: str,
    deep: bool,
) -> None:
    """Copies made without UIDPLUS have no target UID: account for them as a multiset of sizes
    (or of digests with --deep) among the unclaimed target messages."""
    pool: Counter[object] = Counter()
    unclaimed = [uid for uid in target_sizes if uid not in claimed]
    for uid in unclaimed:
        pool[target_digests.get(uid) if deep else target_sizes[uid]] += 1
    for meta in metas:
        key = source_digests.get(meta.key) if deep else meta.size
        if pool[key] > 0:
            pool[key] -= 1
            result.counts["ok"] += 1
        else:
            result.counts["lost"] += 1
            check.differences.append(
                Difference(
                    folder, meta.uid, meta.size, "lost", "copied without UIDPLUS and not found on the target"
                )
            )
    claimed.update(unclaimed[: len(metas)])


def verify_text(report: VerifyReport) -> str:
    lines: list[str] = []
    for m in report.mailboxes:
        lines.append(
            f"{m.source} -> {m.target}: " + ("OK" if m.ok else ("NOT VERIFIED" if m.error else "DIFFERENCES"))
        )
        if m.error:
            lines.append(f"  {m.error}")
            continue
        lines.append(
            f"  {'folder':<30} {'src msgs':>8} {'src MB':>8} {'dst msgs':>8} {'dst MB':>8}  explained"
        )
        for f in m.folders:
            explained = ", ".join(f"{v} {k}" for k, v in f.counts.items() if v and k != "ok")
            if f.extra_on_target:
                explained += (", " if explained else "") + f"{f.extra_on_target} extra on target"
            if f.error:
                explained = f.error
            lines.append(
                f"  {f.source[:30]:<30} {f.source_messages:>8} {f.source_bytes / 1e6:>8.2f} "
                f"{f.target_messages:>8} {f.target_bytes / 1e6:>8.2f}  {explained}"
            )
        for d in m.differences:
            lines.append(f"  {d.bucket.upper():<9} {d.folder} UID {d.uid} ({d.size} bytes): {d.reason}")
    t = report.totals()
    lines.append("")
    checked = "byte-for-byte (SHA-256)" if report.deep else "by count and size"
    if report.incomplete:
        lines.append("Verdict: verification INCOMPLETE: some mailboxes could not be checked (see above).")
    elif report.ok:
        lines.append(
            f"Verdict: OK, all {t['ok']} copied messages are on the target, checked {checked}"
            + (f"; {t['new']} new on the source since the last pass" if t["new"] else "")
            + (f"; {t['excluded']} in excluded folders" if t["excluded"] else "")
            + "."
        )
    else:
        lines.append(
            f"Verdict: DIFFERENCES: {t['lost']} lost, {t['different']} different, {t['skipped']} skipped, "
            f"{t['failed']} failed (each listed above with its reason); {t['ok']} ok."
        )
    return "\n".join(lines)
