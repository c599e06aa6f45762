"""Fetch → append for one folder, overlapped: a reader thread fetches the next batch from the
source while this thread appends the current one to the target.

Crash safety: before each APPEND the batch is written to the ledger as *pending* with the target
folder's UIDNEXT at that moment (the floor). If the process dies between APPEND and the result
write, the next run compares the target messages above the floor with the pending digests
(``reconcile.resolve_pending``) and so never appends them twice.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

from runners.connectors.base import SourceSession, TargetSession
from runners.engine import faults
from runners.errors import CommandError
from runners.imap.dates import canonical_date
from runners.model import AppendItem, FetchedMessage, FetchFailure, FolderInfo, MessageMeta, flag_text
from runners.state.store import StateStore

_END = object()


@dataclass(slots=True)
class Batch:
    fetched: list[FetchedMessage]
    failed: list[FetchFailure]


@dataclass(slots=True)
class CopyContext:
    store: StateStore
    source: SourceSession
    target: TargetSession
    folder: FolderInfo
    folder_id: int
    uidvalidity: int
    target_wire: str
    run_id: int
    batch_messages: int
    batch_bytes: int
    #: digest → target UIDs already holding that content and not yet claimed by a ledger row.
    prematched: dict[bytes, list[int]] | None = None


class MailboxFatal(CommandError):
    """The target refuses the whole mailbox (over quota, no permission): stop copying into it."""


class CopyCounters:
    __slots__ = ("bytes_copied", "copied", "failed", "matched")

    def __init__(self) -> None:
        self.copied = 0
        self.bytes_copied = 0
        self.failed = 0
        self.matched = 0


def _batches(
    items: Iterator[FetchedMessage | FetchFailure], max_messages: int, max_bytes: int
) -> Iterator[Batch]:
    fetched: list[FetchedMessage] = []
    failed: list[FetchFailure] = []
    size = 0
    for item in items:
        if type(item) is FetchedMessage:
            fetched.append(item)
            size += len(item.body)
        else:
            failed.append(item)  # type: ignore[arg-type]
        if size >= max_bytes or len(fetched) + len(failed) >= max_messages:
            yield Batch(fetched, failed)
            fetched, failed, size = [], [], 0
    if fetched or failed:
        yield Batch(fetched, failed)


def copy_folder(
    ctx: CopyContext,
    todo: Sequence[MessageMeta],
    counters: CopyCounters,
    on_batch: Callable[[], None] = lambda: None,
) -> None:
    """Copy ``todo`` (source metadata not yet on the target) into ``ctx.target_wire``."""
    if not todo:
        return
    floor = ctx.target.folder_state(ctx.target_wire).uidnext
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()

    def reader() -> None:
        try:
            for batch in _batches(ctx.source.fetch(ctx.folder, todo), ctx.batch_messages, ctx.batch_bytes):
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(_END)
        except BaseException as exc:  # handed to the appending thread, which raises it
            handoff.put(exc)

    thread = threading.Thread(target=reader, name=f"fetch-{ctx.folder.raw_name}", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Batch)
            floor = _store_batch(ctx, item, floor, counters)
            on_batch()
    finally:
        stop.set()
        # Unblock a reader waiting to hand over, then wait for it to notice the stop.
        while thread.is_alive():
            try:
                handoff.get(timeout=0.2)
            except queue.Empty:
                pass


def unsent_row(
    folder_id: int, uidvalidity: int, meta: MessageMeta, status: str, reason: str, run_id: int
) -> tuple[object, ...]:
    """One row for ``StateStore.record_unsent``: a message left on the source, and why."""
    return (
        folder_id,
        uidvalidity,
        meta.key,
        meta.uid,
        meta.size,
        meta.internaldate,
        flag_text(meta.flags),
        status,
        reason,
        run_id,
    )


def _store_batch(ctx: CopyContext, batch: Batch, floor: int, counters: CopyCounters) -> int:
    store, fid, validity, run = ctx.store, ctx.folder_id, ctx.uidvalidity, ctx.run_id
    if batch.failed:
        store.record_unsent(unsent_row(fid, validity, f.meta, "failed", f.reason, run) for f in batch.failed)
        counters.failed += len(batch.failed)
    digests = [hashlib.sha256(m.body).digest() for m in batch.fetched]
    send: list[tuple[FetchedMessage, bytes]] = []
    matched: list[tuple[object, ...]] = []
    for message, digest in zip(batch.fetched, digests, strict=True):
        pool = ctx.prematched.get(digest) if ctx.prematched else None
        if pool:
            meta = message.meta
            matched.append(
                (
                    fid,
                    validity,
                    meta.key,
                    meta.uid,
                    meta.size,
                    meta.internaldate,
                    flag_text(meta.flags),
                    digest,
                    ctx.target_wire,
                    pool.pop(),
                    run,
                )
            )
        else:
            send.append((message, digest))
    if matched:
        # The target copy may carry older flags than the source has now.
        ctx.target.set_flags(ctx.target_wire, [(int(m[9]), tuple(str(m[6]).split())) for m in matched])  # type: ignore[call-overload]
        store.record_matched(matched)
        counters.matched += len(matched)
    if not send:
        return floor
    store.record_intents(
        (
            fid,
            validity,
            m.meta.key,
            m.meta.uid,
            m.meta.size,
            m.meta.internaldate,
            flag_text(m.meta.flags),
            digest,
            ctx.target_wire,
            floor,
            run,
        )
        for m, digest in send
    )
    faults.reached("before-append")
    outcomes = ctx.target.append(
        ctx.target_wire, [AppendItem(m.body, m.meta.flags, m.meta.internaldate) for m, _ in send]
    )
    faults.after_append()
    results: list[tuple[object, ...]] = []
    fatal: str | None = None
    fatal_code: str | None = None
    for (message, _), outcome in zip(send, outcomes, strict=True):
        key = message.meta.key
        if outcome.error is None:
            results.append(("copied", outcome.uid, _date_note(message.meta.internaldate), fid, validity, key))
            counters.copied += 1
            counters.bytes_copied += len(message.body)
            if outcome.uid is not None and outcome.uid >= floor:
                floor = outcome.uid + 1
        else:
            results.append(("failed", None, f"target refused APPEND: {outcome.error}", fid, validity, key))
            counters.failed += 1
            if outcome.fatal_for_mailbox:
                fatal, fatal_code = outcome.error, outcome.code
    store.record_results(results)
    faults.reached("after-record")
    if fatal is not None:
        raise MailboxFatal(ctx.target.server, f"APPEND {ctx.target_wire}", fatal, fatal_code)
    return floor


def _date_note(internaldate: str | None) -> str | None:
    """Say so in the ledger when the source's INTERNALDATE was unreadable and the copy got none."""
    if internaldate is None or canonical_date(internaldate) is not None:
        return None
    return f"copied without its arrival date: the source's INTERNALDATE {internaldate!r} could not be read"
