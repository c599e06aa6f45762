"""``cutover verify``: compare source and target folder by folder and explain every difference.

Each source message ends in exactly one bucket: ``ok`` (on the target with the arrival date it was
sent with, the flags the last pass gave it and the size it was sent with; with ``--deep``
byte-identical by SHA-256 where the target keeps bytes), ``skipped`` / ``failed`` (with the ledger's reason), ``waived`` (an
operator decided it is not copied, with the reason), ``new`` (arrived
on the source after the last pass: the next delta copies it), ``excluded`` (folder left out by the
plan) or ``lost`` (no explanation: a defect). The report is ``ok`` when nothing is lost, skipped,
failed or different; ``new``, ``excluded`` and ``waived`` are reported but don't fail it.

A target that re-renders messages (Exchange over EWS or Graph) can't be compared by bytes, and no
byte identity is claimed for it. There a copy is proven by what the service keeps
(``runners.kept``): exactly one item carries the message's key, and its received and sent times,
read, flag, answered/forwarded and draft state and categories are as the source says; with
``--deep`` also the headers Exchange keeps, the text of each body part and every attachment's
SHA-256. A mismatch is "different", with each field named.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from runners.adapters import target_capabilities
from runners.connectors.base import SourceSession, TargetSession
from runners.engine.reconcile import item_key
from runners.engine.sessions import ConnectionCaps
from runners.engine.wave import select_mailboxes
from runners.errors import MigrationError, ProtocolError
from runners.folders import FolderMapping, plan_folders
from runners.imap.dates import parse_date_time
from runners.kept import KeptItem, differences, expected_item
from runners.model import FetchedMessage, FolderState, MessageMeta, settable_flags
from runners.plan.model import MailboxEntry, Plan
from runners.safe_text import safe
from runners.state.open_store import open_store, store_exists, store_location
from runners.state.rows import SyncedFolder
from runners.state.statuses import MessageStatus
from runners.state.store import MATCHED_NOTE, LedgerEntry, StateStore

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
    #: False: the target re-renders messages and was checked by what it keeps (runners.kept).
    keeps_bytes: bool = True

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
            "compared_by": "sha256"
            if self.deep and self.keeps_bytes
            else "kept-fields"
            if not self.keeps_bytes
            else "count-size-date-and-flags",
            "ok": self.ok,
            "incomplete": self.incomplete,
            "totals": self.totals(),
            "mailboxes": [asdict(m) | {"ok": m.ok} for m in self.mailboxes],
        }


def verify_wave(
    plan: Plan, wave: str, *, only: Sequence[str] = (), deep: bool = False, workers: int | None = None
) -> VerifyReport:
    entries = select_mailboxes(plan, wave, only)
    if not store_exists(plan):
        raise MigrationError(f"no state store at {store_location(plan)}: nothing has been migrated yet")
    store = open_store(plan, read_only=True)  # verify only reads: the helpdesk may run it
    caps = ConnectionCaps()
    keeps_bytes = target_capabilities(plan.target.type).keeps_bytes

    def one(entry: MailboxEntry) -> MailboxCheck:
        try:
            return _verify_mailbox(plan, store, caps, entry, deep, keeps_bytes)
        finally:
            store.close()

    with ThreadPoolExecutor(max_workers=max(1, min(workers or plan.workers, len(entries)))) as pool:
        checks = list(pool.map(one, entries))
    return VerifyReport(wave, deep, checks, keeps_bytes)


def _verify_mailbox(
    plan: Plan, store: StateStore, caps: ConnectionCaps, entry: MailboxEntry, deep: bool, keeps_bytes: bool
) -> MailboxCheck:
    check = MailboxCheck(entry.source, entry.target)
    synced = store.synced_folders(entry.source)
    if synced is None:
        check.error = "never migrated: no run has touched this mailbox"
        return check
    try:
        with caps.both(plan, entry) as (source, target):
            mappings = plan_folders(source.list_folders(), plan.folders, target.layout())
            claimed_by_target: dict[str, set[str]] = {}
            sides = _Sides(source, target, deep and keeps_bytes, deep and not keeps_bytes, not keeps_bytes)
            for mapping in mappings:
                if not mapping.source.selectable:
                    continue
                claimed = claimed_by_target.setdefault(mapping.target_wire, set())
                folder = synced.get(mapping.source.raw_name)
                check.folders.append(_verify_folder(store, sides, folder, mapping, check, claimed))
    except (ProtocolError, MigrationError) as exc:
        check.error = str(exc)
    return check


@dataclass(slots=True)
class _Sides:
    source: SourceSession
    target: TargetSession
    #: Compare SHA-256 of the bytes: asked for (--deep) and provable (the target keeps bytes exactly).
    deep: bool
    #: A target that doesn't keep bytes: compare what it keeps, with --deep its content too.
    kept_deep: bool = False
    by_kept: bool = False


@dataclass(slots=True)
class _TargetView:
    """What verification knows of one target folder: sizes, arrival dates and flags always,
    digests with --deep."""

    sizes: dict[str, int]
    digests: dict[str, bytes]
    claimed: set[str]
    arrivals: dict[str, str] = field(default_factory=dict)
    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: With --deep: each item's length as fetched (its digest's bytes).
    lengths: dict[str, int] = field(default_factory=dict)


def _verify_folder(
    store: StateStore,
    sides: _Sides,
    synced: SyncedFolder | None,
    mapping: FolderMapping,
    check: MailboxCheck,
    claimed: set[str],
) -> FolderCheck:
    """Put every source message of one folder in its bucket, in three steps: list both sides,
    explain each message by the ledger, then account for copies the ledger has no target id for."""
    result = FolderCheck(mapping.source.display, mapping.target_wire, excluded=mapping.excluded)
    try:
        state, metas = sides.source.list_messages(mapping.source)
    except ProtocolError as exc:
        result.error = f"source: {exc}"
        return result
    result.source_messages = len(metas)
    result.source_bytes = sum(m.size for m in metas if m.size > 0)
    if mapping.excluded is not None:
        result.counts["excluded"] = len(metas)
        return result
    ledger = store.ledger(synced.id, state.uidvalidity) if synced else {}
    if sides.by_kept:
        _verify_kept_folder(sides, synced, mapping, state, metas, ledger, result, check, claimed)
        return result
    try:
        listed = sides.target.list_items(mapping.target_wire)
        view = _TargetView(
            {item: listing.size for item, listing in listed.items()},
            {},
            claimed,
            {item: listing.internaldate for item, listing in listed.items() if listing.internaldate},
            {item: listing.flags for item, listing in listed.items() if listing.flags is not None},
        )
    except ProtocolError as exc:
        result.error = f"target: {exc}"
        return result
    result.target_messages = len(view.sizes)
    result.target_bytes = sum(view.sizes.values())
    source_digests = _digests(sides, mapping, metas, view)
    unmapped: list[MessageMeta] = []
    for meta in metas:
        entry = ledger.get(meta.key)
        if entry is not None and entry.status == MessageStatus.COPIED and entry.target_id is None:
            unmapped.append(meta)
            continue
        bucket, reason = _bucket(meta, entry, synced, view, source_digests, sides.deep, by_size=True)
        result.counts[bucket] += 1
        if bucket != "ok":
            check.differences.append(Difference(mapping.source.display, meta.uid, meta.size, bucket, reason))
    if unmapped:
        sizes = {m.key: _sent_or_listed(m, ledger.get(m.key)) for m in unmapped}
        _verify_by_content(
            unmapped, sizes, view, source_digests, result, check, mapping.source.display, sides.deep
        )
    result.extra_on_target = len(set(view.sizes) - claimed)
    return result


def _verify_kept_folder(
    sides: _Sides,
    synced: SyncedFolder | None,
    mapping: FolderMapping,
    state: FolderState,
    metas: list[MessageMeta],
    ledger: dict[str, LedgerEntry],
    result: FolderCheck,
    check: MailboxCheck,
    claimed: set[str],
) -> None:
    """A target that re-renders messages: explain each message by the ledger, then prove each copy
    by its key (exactly one item carries it) and by the fields the service keeps."""
    folder = mapping.source.display
    try:
        kept = sides.target.kept_items(mapping.target_wire, deep=sides.kept_deep)
    except ProtocolError as exc:
        result.error = f"target: {exc}"
        return
    result.target_messages = len(kept)
    result.target_bytes = sum(item.size for item in kept.values())
    holders: dict[str, list[str]] = defaultdict(list)
    for item_id, item in kept.items():
        holders[item.key].append(item_id)
    view = _TargetView({item_id: item.size for item_id, item in kept.items()}, {}, claimed)
    to_compare: dict[str, tuple[MessageMeta, str, str]] = {}
    for meta in metas:
        bucket, reason = _bucket(meta, ledger.get(meta.key), synced, view, {}, False)
        if bucket == "ok" and synced is not None:
            key = item_key(synced.id, state.uidvalidity, meta.key)
            target_id = ledger[meta.key].target_id or ""
            carriers = holders.get(key, [])
            if not carriers and _keeps_earlier_key(ledger[meta.key], kept.get(target_id), holders, target_id):
                key = kept[target_id].key
                carriers = [target_id]
            if carriers == [target_id]:
                to_compare[meta.key] = (meta, target_id, key)
                continue
            bucket = "different"
            reason = (
                f"{len(carriers)} target items carry its key ({', '.join(carriers)})"
                if len(carriers) > 1
                else f"target item {target_id} does not carry its key"
            )
        _count(result, check, folder, meta, bucket, reason)
    if to_compare:
        for fetched in sides.source.fetch(mapping.source, [meta for meta, _, _ in to_compare.values()]):
            meta, target_id, key = to_compare.pop(fetched.meta.key)
            if not isinstance(fetched, FetchedMessage):
                _count(result, check, folder, meta, "different", "the source could not deliver the message")
                continue
            expected = expected_item(fetched.body, meta.flags, meta.internaldate, key, deep=sides.kept_deep)
            found = differences(expected, kept[target_id])
            route = f" (made by {kept[target_id].route})" if kept[target_id].route else ""
            bucket, reason = (
                ("different", f"target item {target_id}{route}: " + "; ".join(found)) if found else ("ok", "")
            )
            _count(result, check, folder, meta, bucket, reason)
        for meta, _, _ in to_compare.values():  # a source that yields less than asked: never silent
            _count(result, check, folder, meta, "different", "the source did not deliver the message")
    result.extra_on_target = len(set(kept) - claimed)


def _keeps_earlier_key(
    entry: LedgerEntry, item: KeptItem | None, holders: dict[str, list[str]], target_id: str
) -> bool:
    """A copy matched by the ledger after a UIDVALIDITY change keeps the key it was made with (an
    earlier UIDVALIDITY's): accepted when the row says it was matched and that item alone carries
    that key (no item carries the row's own key: the caller checked)."""
    return (
        entry.reason == MATCHED_NOTE
        and item is not None
        and bool(item.key)
        and holders.get(item.key) == [target_id]
    )


def _count(
    result: FolderCheck, check: MailboxCheck, folder: str, meta: MessageMeta, bucket: str, reason: str
) -> None:
    result.counts[bucket] += 1
    if bucket != "ok":
        check.differences.append(Difference(folder, meta.uid, meta.size, bucket, reason))


def _digests(
    sides: _Sides, mapping: FolderMapping, metas: list[MessageMeta], view: _TargetView
) -> dict[str, tuple[bytes, int]]:
    """With a deep check, SHA-256 of both sides: the target's into ``view`` (its lengths too), the
    source's returned with each message's length."""
    if not sides.deep:
        return {}
    for item, length, digest in sides.target.digests(mapping.target_wire):
        view.digests[item] = digest
        view.lengths[item] = length
    return {
        item.meta.key: (hashlib.sha256(item.body).digest(), len(item.body))
        for item in sides.source.fetch(mapping.source, metas)
        if isinstance(item, FetchedMessage)
    }


def _bucket(
    meta: MessageMeta,
    entry: LedgerEntry | None,
    synced: SyncedFolder | None,
    view: _TargetView,
    source_digests: dict[str, tuple[bytes, int]],
    deep: bool,
    *,
    by_size: bool = False,
) -> tuple[str, str]:
    """The bucket of one source message the ledger can explain (or not), with the reason.
    ``by_size``: the target keeps the bytes it was sent (IMAP), so a copy's size is the size sent."""
    if entry is None:
        if synced is None or synced.uidnext is None or meta.uid >= synced.uidnext:
            return "new", "arrived on the source after the last pass; the next delta copies it"
        return "lost", "on the source but not in the ledger"
    if entry.status in (MessageStatus.SKIPPED, MessageStatus.FAILED, MessageStatus.WAIVED):
        return entry.status, entry.reason or ""
    if entry.status == MessageStatus.PENDING:
        return "lost", "an interrupted APPEND not yet reconciled; run the wave again"
    item = entry.target_id
    if item is None or item not in view.sizes:
        return "lost", f"copied to target item {item}, which is no longer on the target"
    view.claimed.add(item)
    # A copy found on the target by content was not sent: its item's date is its own.
    sent = entry.internaldate or meta.internaldate
    kept = view.arrivals.get(item)
    if entry.reason != MATCHED_NOTE and _arrival_differs(sent, kept):
        return "different", f"target item {item} keeps the arrival date {kept}; it was sent with {sent}"
    flags_kept = view.flags.get(item)
    if flags_kept is not None:
        given = settable_flags(entry.flags.split())
        if _flags_differ(given, flags_kept):
            return (
                "different",
                f"target item {item} keeps the flags {_shown(flags_kept)}; it was given {_shown(given)}",
            )
    kept_size, sent_size = view.sizes[item], entry.sent_size
    if by_size and not deep and sent_size is not None and kept_size != sent_size:
        # Dovecot stores a message with bare CRs shorter, and still says OK to the APPEND. (--deep
        # compares the bytes themselves, below.)
        return "different", f"target item {item} is {kept_size} bytes; the copy sent was {sent_size}"
    if deep:
        src = source_digests.get(meta.key)
        if src is None:
            return "different", "the source could not deliver the message for comparison"
        if src[0] != view.digests.get(item):
            # The lengths say whether the target changed the message's length (a server that
            # rewrites bare CR or LF line ends) or only bytes within it.
            kept_length = view.lengths.get(item)
            return "different", (
                f"target item {item} differs from the source bytes ({kept_length} bytes kept, the source has {src[1]})"
                if kept_length is not None and kept_length != src[1]
                else f"target item {item} differs from the source bytes (the same length, {src[1]} bytes)"
            )
    return "ok", ""


def _flags_differ(given: Sequence[str], kept: Sequence[str]) -> bool:
    """Whether the target keeps other flags than the last pass gave the copy: a flag it dropped
    (a keyword where its PERMANENTFLAGS take none) or one set there since. Flag names compare
    without case (a server may keep a keyword in the case it first saw). A flag changed on the
    source since the last pass is not a difference of the copy: the next pass carries it over."""
    return {f.casefold() for f in given} != {f.casefold() for f in kept}


def _shown(flags: Sequence[str]) -> str:
    return "(" + " ".join(sorted(flags)) + ")" if flags else "(none)"


def _arrival_differs(sent: str | None, kept: str | None) -> bool:
    """Whether the target keeps another moment than the copy was sent with (in whatever zone each is
    written). A date that doesn't parse was not sent (the APPEND went without one, and the ledger says
    so): it proves nothing either way."""
    sent_at = None if sent is None else parse_date_time(sent)
    kept_at = None if kept is None else parse_date_time(kept)
    return sent_at is not None and kept_at is not None and sent_at != kept_at


def _sent_or_listed(meta: MessageMeta, entry: LedgerEntry | None) -> int:
    """The size a copy should have on the target: the bytes sent, where the ledger kept them (a
    Maildir without ``,W=`` lists the file's size, not the CRLF bytes sent), else the listed size."""
    return entry.sent_size if entry is not None and entry.sent_size is not None else meta.size


def _verify_by_content(
    metas: list[MessageMeta],
    sizes: dict[str, int],
    view: _TargetView,
    source_digests: dict[str, tuple[bytes, int]],
    result: FolderCheck,
    check: MailboxCheck,
    folder: str,
    deep: bool,
) -> None:
    """Copies made without a target id (IMAP without UIDPLUS): account for them as a multiset of
    sizes (or of digests with --deep) among the unclaimed target items."""
    pool: Counter[object] = Counter()
    unclaimed = [item for item in view.sizes if item not in view.claimed]
    for item in unclaimed:
        pool[view.digests.get(item) if deep else view.sizes[item]] += 1
    for meta in metas:
        source = source_digests.get(meta.key)
        key = (source[0] if source else None) if deep else sizes[meta.key]
        if pool[key] > 0:
            pool[key] -= 1
            result.counts["ok"] += 1
        else:
            result.counts["lost"] += 1
            check.differences.append(
                Difference(
                    folder,
                    meta.uid,
                    meta.size,
                    "lost",
                    "copied without a target id and not found on the target",
                )
            )
    view.claimed.update(unclaimed[: len(metas)])


def verify_text(report: VerifyReport) -> str:
    lines: list[str] = []
    for m in report.mailboxes:
        lines.append(
            f"{m.source} -> {m.target}: " + ("OK" if m.ok else ("NOT VERIFIED" if m.error else "DIFFERENCES"))
        )
        if m.error:
            lines.append(f"  {safe(m.error)}")
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
                f"  {safe(f.source)[:30]:<30} {f.source_messages:>8} {f.source_bytes / 1e6:>8.2f} "
                f"{f.target_messages:>8} {f.target_bytes / 1e6:>8.2f}  {explained}"
            )
        for d in m.differences:
            lines.append(
                f"  {d.bucket.upper():<9} {safe(d.folder)} UID {d.uid} ({d.size} bytes): {safe(d.reason)}"
            )
    t = report.totals()
    lines.append("")
    checked = {
        (True, True): "byte-for-byte (SHA-256) and by arrival date",
        (True, False): "by count, size and arrival date",
        (
            False,
            True,
        ): "by key, dates, state, kept headers, body text and attachment SHA-256 (not bytes: the target re-renders messages)",
        (False, False): "by key, dates and state (not bytes: the target re-renders messages)",
    }[(report.keeps_bytes, report.deep)]
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
