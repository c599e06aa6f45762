"""Fetch → append for one folder, overlapped: a reader thread fetches the next batch from the
source while this thread appends the current one to the target.

Crash safety: before each APPEND the batch is written to the ledger as one *batch intent* (its
messages' keys, SHA-256s and facts) with the target adapter's recovery mark (IMAP: the folder's
UIDNEXT at that moment): its messages are pending. If the process dies between APPEND and the
result write, the next run hands them to the target's recovery strategy
(``reconcile.resolve_pending``) and so never appends them twice.

A batch's outcomes are written in the transaction of the next batch's intent (one fsync a batch,
not two), and at the end of the copy, on a stop or on an error: never before the target answered.
Each message's ledger row is written then, once and whole, and the batch intent deleted with it.
The mailbox's live counters, when due, ride in those transactions too.

An append the target keeps failing (past the adapter's retries, not throttling) goes up as
``resilience.AppendFailed`` naming the messages it carried; from then on those are appended one at
a time, after the rest of their batch (``CopyContext.alone``), each with its own intent, so that
the one at fault is found and recorded as failed while the others go in (``MailboxJob``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass

from runners.connectors.base import SourceSession, TargetSession
from runners.engine import faults
from runners.engine.reconcile import item_key
from runners.engine.resilience import AppendFailed, blames_message
from runners.errors import MailboxFatal, ProtocolError
from runners.imap.dates import canonical_date
from runners.model import AppendItem, AppendOutcome, FetchedMessage, FetchFailure, FolderInfo, MessageMeta
from runners.state.rows import BatchIntent, Matched, MessageRef, Result, Sent, SentBatch, SourceFacts, Unsent
from runners.state.statuses import MessageStatus
from runners.state.store import MailboxProgress, StateStore

_END = object()


class _Readers:
    """Threads for the copies' fetch readers, each kept for the next copy once its reader returned:
    a copy used to start a thread of its own (~0.2 ms of CPU each; a run of 8 mailboxes x 1,500
    messages started 124 threads in all, 23 now). Idle ones wait, daemons, for as many copies as
    ran at once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue[tuple[Callable[[], None], threading.Event, str]]] = []
        self._pid = os.getpid()

    def start(self, work: Callable[[], None], name: str) -> threading.Event:
        """Run ``work`` on an idle reader thread, or a new one; the event is set once it returned."""
        done = threading.Event()
        with self._lock:
            if self._pid != os.getpid():  # forked: the parent's threads are not in this process
                self._idle, self._pid = [], os.getpid()
            box = self._idle.pop() if self._idle else None
        if box is None:
            box = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(box,), name=name, daemon=True).start()
        box.put((work, done, name))
        return done

    def _serve(self, box: queue.SimpleQueue[tuple[Callable[[], None], threading.Event, str]]) -> None:
        while True:
            work, done, name = box.get()
            threading.current_thread().name = name
            try:
                work()
            finally:
                done.set()
            del work, done  # the copy's context is not kept alive by an idle thread
            with self._lock:
                self._idle.append(box)


_readers = _Readers()


@dataclass(slots=True)
class Batch:
    fetched: list[FetchedMessage]
    #: The SHA-256 of each fetched body, in the same order.
    digests: list[bytes]
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
    #: digest → target items already holding that content and not yet claimed by a ledger row.
    prematched: dict[bytes, list[str]] | None = None
    #: The mailbox's live counters when they are due (``StateStore.record_batch`` writes them along).
    progress_due: Callable[[], tuple[int, MailboxProgress] | None] = lambda: None
    #: Source UIDs of messages an append that kept failing carried: each is appended alone, after
    #: the rest of its batch (``resilience.Suspects.narrow_append``).
    alone: Collection[int] = frozenset()
    #: Of those, the ones that failed alone already: appended after the others.
    alone_last: Collection[int] = frozenset()

    def ref(self, meta: MessageMeta) -> MessageRef:
        return MessageRef(self.folder_id, self.uidvalidity, meta.key)


class CopyCounters:
    __slots__ = ("bytes_copied", "copied", "failed", "matched")

    def __init__(self) -> None:
        self.copied = 0
        self.bytes_copied = 0
        self.failed = 0
        self.matched = 0


def batch_limits(plan_messages: int, plan_bytes: int, target: TargetSession) -> tuple[int, int]:
    """The plan's batch sizes, lowered to what one request to the target may carry."""
    caps = target.capabilities
    messages = min(plan_messages, caps.batch_messages) if caps.batch_messages else plan_messages
    size = min(plan_bytes, caps.batch_bytes) if caps.batch_bytes else plan_bytes
    return messages, size


def _batches(
    items: Iterator[FetchedMessage | FetchFailure], max_messages: int, max_bytes: int
) -> Iterator[Batch]:
    fetched: list[FetchedMessage] = []
    digests: list[bytes] = []
    failed: list[FetchFailure] = []
    size = 0
    for item in items:
        if type(item) is FetchedMessage:
            fetched.append(item)
            # Hashed here, in the fetching thread, while the body just read is in this core's
            # cache: the appending thread would read it back from memory (measured: 5 % of a
            # run's CPU, docs/benchmarks.md).
            digests.append(hashlib.sha256(item.body).digest())
            size += len(item.body)
        else:
            failed.append(item)  # type: ignore[arg-type]
        if size >= max_bytes or len(fetched) + len(failed) >= max_messages:
            yield Batch(fetched, digests, failed)
            fetched, digests, failed, size = [], [], [], 0
    if fetched or failed:
        yield Batch(fetched, digests, failed)


def copy_folder(
    ctx: CopyContext,
    todo: Sequence[MessageMeta],
    counters: CopyCounters,
    on_batch: Callable[[Callable[[], None]], None] = lambda flush: None,
) -> None:
    """Copy ``todo`` (source metadata not yet on the target) into ``ctx.target_wire``.

    ``on_batch`` is called after each batch with a function that writes the outcomes not in the
    ledger yet: for a pause, so that the ledger is complete while the mailbox waits."""
    if not todo:
        return
    mark = ctx.target.recovery.mark(ctx.target_wire)
    handoff: queue.Queue[object] = queue.Queue(maxsize=1)
    stop = threading.Event()
    taken = threading.Event()  # the appending thread took what was handed over
    one_ahead = ctx.target.capabilities.fetch_ahead < 2
    max_messages, max_bytes = batch_limits(ctx.batch_messages, ctx.batch_bytes, ctx.target)

    #: Batches the target answered that are not in the ledger yet (written with the next intent).
    unrecorded: list[SentBatch] = []

    def flush() -> None:
        _flush(ctx, unrecorded)

    def reader() -> None:
        try:
            for batch in _batches(ctx.source.fetch(ctx.folder, todo), max_messages, max_bytes):
                taken.clear()
                while not stop.is_set():
                    try:
                        handoff.put(batch, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                del batch
                while one_ahead and not stop.is_set() and not taken.wait(0.5):
                    continue
                if stop.is_set():
                    return
            handoff.put(_END)
        except BaseException as exc:  # handed to the appending thread, which raises it
            handoff.put(exc)

    read = _readers.start(reader, f"fetch-{ctx.folder.raw_name}")
    try:
        while True:
            item = handoff.get()
            taken.set()
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, Batch)
            mark = _store_batch(ctx, item, mark, counters, unrecorded)
            on_batch(flush)
        _flush(ctx, unrecorded)
    except BaseException:
        # What the target took is written before the error goes up, if the store lets us (else
        # those rows stay pending, and the next pass settles them as after a crash).
        with contextlib.suppress(Exception):
            _flush(ctx, unrecorded)
        raise
    finally:
        stop.set()
        # Unblock a reader waiting to hand over, then wait for it to notice the stop. After the end
        # marker the reader is already returning: wait for it, never on the empty queue.
        while not read.is_set():
            try:
                handoff.get_nowait()
            except queue.Empty:
                read.wait(timeout=0.05)


def unsent_row(
    folder_id: int, uidvalidity: int, meta: MessageMeta, status: str, reason: str, run_id: int
) -> Unsent:
    """One row for ``StateStore.record_unsent``: a message left on the source, and why."""
    return Unsent(MessageRef(folder_id, uidvalidity, meta.key), SourceFacts.of(meta), status, reason, run_id)


def _flush(ctx: CopyContext, unrecorded: list[SentBatch]) -> None:
    """Write the outcomes not in the ledger yet (the copy ends, stops or fails)."""
    if unrecorded:
        ctx.store.record_sent(unrecorded, None, ctx.progress_due())
        unrecorded.clear()
        faults.reached("after-record")


def _store_batch(
    ctx: CopyContext, batch: Batch, mark: str | None, counters: CopyCounters, unrecorded: list[SentBatch]
) -> str | None:
    """One batch: record what the source could not deliver, claim what the target already holds,
    then intent → APPEND for the rest; their outcomes join ``unrecorded``, written with the next
    batch's intents. Returns the recovery mark for the next batch."""
    _record_source_failures(ctx, batch.failed, counters)
    send = _claim_prematched(ctx, batch.fetched, batch.digests, counters)
    if not send:
        return mark
    if not ctx.alone:
        return _append(ctx, send, mark, counters, unrecorded)
    together = [pair for pair in send if pair[0].meta.uid not in ctx.alone]
    groups = [together] if together else []
    suspects = [pair for pair in send if pair[0].meta.uid in ctx.alone]
    suspects.sort(key=lambda pair: pair[0].meta.uid in ctx.alone_last)  # stable: source order otherwise
    groups += [[pair] for pair in suspects]
    for group in groups:
        mark = _append(ctx, group, mark, counters, unrecorded)
    return mark


def _append(
    ctx: CopyContext,
    send: list[tuple[FetchedMessage, bytes]],
    mark: str | None,
    counters: CopyCounters,
    unrecorded: list[SentBatch],
) -> str | None:
    """Batch intent → one append → outcomes (into ``unrecorded``); returns the next recovery mark."""
    folder_id, uidvalidity, target_wire = ctx.folder_id, ctx.uidvalidity, ctx.target_wire
    intent = BatchIntent(
        folder_id,
        uidvalidity,
        target_wire,
        mark,
        ctx.run_id,
        [Sent(m.meta.key, SourceFacts.of(m.meta), digest, len(m.body)) for m, digest in send],
    )
    intent_id = ctx.store.record_sent(unrecorded, intent, ctx.progress_due())
    assert intent_id is not None
    if unrecorded:
        unrecorded.clear()
        faults.reached("after-record")
    faults.reached("before-append")
    ctx.store.check_lease()  # a runner whose lease may have run out sends nothing (runners.state.fence)
    keyed = ctx.target.recovery.keyed  # only a target that finds lost APPENDs by a stored key needs one
    try:
        outcomes = ctx.target.append(
            target_wire,
            [
                AppendItem(
                    m.body,
                    m.meta.flags,
                    m.meta.internaldate,
                    item_key(folder_id, uidvalidity, m.meta.key) if keyed else "",
                )
                for m, _ in send
            ],
            ctx.store.check_lease,  # asked again right before each send: a freeze may fall after the check above
        )
    except ProtocolError as exc:
        # The intents stay pending: the next attempt settles them by the target's recovery first.
        if blames_message(exc):
            raise AppendFailed(exc, folder_id, uidvalidity, [m.meta for m, _ in send]) from exc
        raise
    faults.reached("after-append")
    _record_outcomes(ctx, intent_id, intent, [m for m, _ in send], outcomes, counters, unrecorded)
    return ctx.target.recovery.advance(mark, outcomes)


def _record_source_failures(ctx: CopyContext, failed: list[FetchFailure], counters: CopyCounters) -> None:
    if failed:
        ctx.store.record_unsent(
            unsent_row(ctx.folder_id, ctx.uidvalidity, f.meta, MessageStatus.FAILED, f.reason, ctx.run_id)
            for f in failed
        )
        counters.failed += len(failed)


def _claim_prematched(
    ctx: CopyContext, fetched: list[FetchedMessage], digests: list[bytes], counters: CopyCounters
) -> list[tuple[FetchedMessage, bytes]]:
    """Record messages the target already holds by content as copied; return the rest, with digests."""
    prematched = ctx.prematched
    if not prematched:
        return list(zip(fetched, digests, strict=True))
    send: list[tuple[FetchedMessage, bytes]] = []
    matched: list[Matched] = []
    for message, digest in zip(fetched, digests, strict=True):
        pool = prematched.get(digest)
        if pool:
            meta = message.meta
            facts = SourceFacts.of(meta)
            matched.append(
                Matched(
                    ctx.ref(meta), facts, digest, ctx.target_wire, pool.pop(), ctx.run_id, len(message.body)
                )
            )
        else:
            send.append((message, digest))
    if matched:
        if (
            ctx.target.capabilities.flags_mutable
        ):  # the target copy may carry older flags than the source has now
            ctx.target.set_flags(
                ctx.target_wire, [(m.target_id, tuple(m.source.flags.split())) for m in matched]
            )
        ctx.store.record_matched(matched)
        counters.matched += len(matched)
    return send


def _record_outcomes(
    ctx: CopyContext,
    intent_id: int,
    intent: BatchIntent,
    sent: list[FetchedMessage],
    outcomes: list[AppendOutcome],
    counters: CopyCounters,
    unrecorded: list[SentBatch],
) -> None:
    """Add the batch's outcomes to ``unrecorded``; write them now and raise ``MailboxFatal`` if the
    target refused the whole mailbox."""
    results: list[Result] = []
    fatal: AppendOutcome | None = None
    copied = copied_bytes = failed = 0
    for message, outcome in zip(sent, outcomes, strict=True):
        if outcome.error is None:
            results.append((MessageStatus.COPIED, outcome.item_id, _date_note(message.meta.internaldate)))
            copied += 1
            copied_bytes += len(message.body)
        else:
            results.append((MessageStatus.FAILED, None, f"target refused APPEND: {outcome.error}"))
            failed += 1
            if outcome.fatal_for_mailbox:
                fatal = outcome
    counters.copied += copied
    counters.bytes_copied += copied_bytes
    counters.failed += failed
    unrecorded.append(SentBatch(intent_id, intent, results))
    if fatal is not None:
        _flush(ctx, unrecorded)
        raise MailboxFatal(ctx.target.server, f"APPEND {ctx.target_wire}", fatal.error or "", fatal.code)


def _date_note(internaldate: str | None) -> str | None:
    """Say so in the ledger when the source's INTERNALDATE was unreadable and the copy got none."""
    if internaldate is None or canonical_date(internaldate) is not None:
        return None
    return f"copied without its arrival date: the source's INTERNALDATE {internaldate!r} could not be read"
