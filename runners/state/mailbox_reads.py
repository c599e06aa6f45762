"""The state store's reads for viewers (the cockpit, ``cutover status``, the launch preview): the
mailboxes' live counters, their folders and ledger counts, what was not copied and why, and events.

Each returns typed rows. The mailbox list filters, orders and limits in SQL (``MailboxQuery``), so a
poll costs what is shown, not the size of the fleet. The rows are built in ``mailbox_views``,
imported by the reads that make them: a run, which never reads them, doesn't build their classes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from runners.state.base import StoreBase
from runners.state.mailbox_search import search_clause
from runners.state.statuses import NOT_COPIED, AttemptStatus, MailboxState, MessageStatus, not_copied_source

if TYPE_CHECKING:
    from runners.state.mailbox_views import (
        Event,
        FleetCounters,
        FolderErrorRow,
        LedgerProgress,
        MailboxDetail,
        MailboxLedgerRow,
        MailboxPage,
        MailboxQuery,
        MailboxRow,
        MessageAttempt,
        MessageIssue,
        NotCopiedRow,
        WaveStateTotals,
    )


class _FolderCounts(NamedTuple):
    """One folder's ledger counted (``FolderDetail``'s order)."""

    copied: int
    copied_bytes: int
    skipped: int
    failed: int
    pending: int


_NO_COUNTS = _FolderCounts(0, 0, 0, 0, 0)

_MAILBOX_COLUMNS = (
    "source, target, wave, state, messages_total, messages_done, bytes_total, bytes_done, failed, skipped, "
    "current_folder, error, error_kind, updated"
)
_ATTENTION = (
    f"(state NOT IN ('{MailboxState.OK}', '{MailboxState.PENDING}') OR failed > 0 OR skipped > 0 "
    "OR error IS NOT NULL)"
)


class MailboxReadsMixin(StoreBase):
    #: Whether ``mailboxes_text`` was seen: a table once there stays, so sqlite_master is asked until then.
    _trigram_table_seen: bool = False

    # -- the fleet, from the per-mailbox counters (never the ledger) --------------------------------

    def wave_state_totals(self) -> list[WaveStateTotals]:
        from runners.state.mailbox_views import WaveStateTotals

        rows = self._read(
            "SELECT wave, state, COUNT(*), SUM(messages_total), SUM(messages_done), SUM(bytes_done), "
            "SUM(failed), SUM(skipped), SUM(bytes_total) FROM mailboxes GROUP BY wave, state"
        )
        return [WaveStateTotals(r[0], MailboxState(r[1]), *(int(v or 0) for v in r[2:])) for r in rows]

    def count_mailboxes(self, query: MailboxQuery) -> int:
        clause, params = _where(query, self._backend.dialect, self._trigram_matches)
        return int(self._read(f"SELECT COUNT(*) FROM mailboxes{clause}", params)[0][0])

    def _trigram_matches(self, phrase: str, limit: int) -> int | None:
        """SQLite's FTS matches of ``phrase`` in ``mailboxes_text``, counted up to ``limit`` (None: a store
        opened read-only from before the table has none)."""
        if not self._trigram_table_seen:
            if not self._read("SELECT 1 FROM sqlite_master WHERE name = 'mailboxes_text'"):
                return None
            self._trigram_table_seen = True
        sql = "SELECT COUNT(*) FROM (SELECT 1 FROM mailboxes_text WHERE mailboxes_text MATCH ? LIMIT ?)"
        return int(self._read(sql, [phrase, limit])[0][0])

    def mailbox_rows(self, query: MailboxQuery) -> list[MailboxRow]:
        return self.mailbox_page(query).rows

    def mailbox_page(self, query: MailboxQuery) -> MailboxPage:
        """The rows of ``query`` from its window's start (``mailbox_pages``): the index in the mailbox
        order, then as many rows as the limit asks, however far into the fleet the window is."""
        from runners.state.mailbox_pages import keyset  # the cockpit's, like the views: not a run's
        from runners.state.mailbox_views import MailboxPage, MailboxRow

        clause, params = _where(query, self._backend.dialect, self._trigram_matches)
        order = keyset(query.order)
        start = query.start
        if query.back > 0:
            # Where the window starts: ``back`` rows before the anchor (or the end); fewer: the first.
            earlier = self.mailboxes_before(query, start, query.back)
            start = earlier[-1].source if len(earlier) == query.back else None
        if start is not None:
            clause = f"{clause} AND {order.after}" if clause else f" WHERE {order.after}"
            params += order.anchored(start)
        limit = " LIMIT ?" if query.limit else ""
        selected = f"FROM mailboxes{clause} ORDER BY {order.order}{limit}"
        if query.text and not query.attention and order.order == "source":
            # A search: the matching sources from the narrow index (mailboxes_search), then their rows.
            selected = f"FROM mailboxes WHERE source IN (SELECT source {selected}) ORDER BY source"
        rows = self._read(
            f"SELECT {_MAILBOX_COLUMNS} {selected}", [*params, int(query.limit)] if query.limit else params
        )
        return MailboxPage([MailboxRow(r[0], r[1], r[2], MailboxState(r[3]), *r[4:]) for r in rows], start)

    def mailboxes_before(self, query: MailboxQuery, start: str | None, count: int) -> list[MailboxRow]:
        """At most ``count`` rows of ``query`` before the mailbox ``start`` (None: before the end) in its
        order, nearest first: where a window read backwards starts."""
        from runners.state.mailbox_pages import keyset
        from runners.state.mailbox_views import MailboxRow

        clause, params = _where(query, self._backend.dialect, self._trigram_matches)
        order = keyset(query.order)
        if start is not None:
            clause = f"{clause} AND {order.before}" if clause else f" WHERE {order.before}"
            params += order.anchored(start)
        rows = self._read(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes{clause} ORDER BY {order.reverse} LIMIT ?",
            [*params, count],
        )
        return [MailboxRow(r[0], r[1], r[2], MailboxState(r[3]), *r[4:]) for r in rows]

    def ledger_progress(self, sources: Sequence[str]) -> dict[str, LedgerProgress]:
        """The ledger of these mailboxes summed per mailbox (a pass over their messages: read for the rows
        on screen, or a bounded number per poll, never the whole fleet at once)."""
        from runners.state.mailbox_views import LedgerProgress

        out: dict[str, LedgerProgress] = {}
        for start in range(0, len(sources), 500):  # SQLite's bound-parameter limit, with room to spare
            chunk = list(sources[start : start + 500])
            marks = ",".join("?" * len(chunk))
            owner: dict[int, str] = {}
            folders: dict[str, list[int]] = {}
            for folder_id, source, messages, size, error in self._read(
                "SELECT f.id, mb.source, f.messages, f.bytes, f.error FROM mailboxes mb "
                f"JOIN folders f ON f.mailbox_id = mb.id WHERE mb.source IN ({marks})",
                chunk,
            ):
                owner[folder_id] = source
                held = folders.setdefault(source, [0, 0, 0])
                held[0] += messages or 0
                held[1] += size or 0
                held[2] += error is not None
            counted: dict[str, list[int]] = {}
            for folder_id, c in self._folder_counts(
                f"SELECT f.id FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE mb.source IN ({marks})",
                chunk,
            ).items():
                total = counted.setdefault(owner[folder_id], [0, 0, 0, 0])
                total[0] += c.copied
                total[1] += c.copied_bytes
                total[2] += c.failed
                total[3] += c.skipped
            for source in chunk:
                copied, copied_bytes, failed, skipped = counted.get(source, (0, 0, 0, 0))
                messages, size, errors = folders.get(source, (0, 0, 0))
                out[source] = LedgerProgress(copied, copied_bytes, failed, skipped, messages, size, errors)
        return out

    def changed_mailboxes(self, after: tuple[float, str], limit: int | None) -> list[FleetCounters]:
        """The counters of mailboxes whose ``updated`` stamp is past ``after`` ((stamp, source): a
        watermark), oldest change first, at most ``limit``: what a ledger cache re-reads next."""
        rows = self._read(
            "SELECT source, wave, state, messages_total, messages_done, bytes_total, bytes_done, failed, skipped, "
            "COALESCE(updated, 0) AS stamp FROM mailboxes WHERE COALESCE(updated, 0) >= ? "
            # The first term lets the index (mailboxes_changed) start at the watermark, not scan to it.
            "AND (COALESCE(updated, 0), source) > (?, ?) ORDER BY COALESCE(updated, 0), source"
            + (" LIMIT ?" if limit is not None else ""),
            [after[0], after[0], after[1], *([limit] if limit is not None else [])],
        )
        return [tuple(r) for r in rows]

    def active_mailboxes(self, limit: int) -> list[MailboxRow]:
        """The running mailboxes most recently active, at most ``limit``."""
        from runners.state.mailbox_views import MailboxRow

        rows = self._read(
            f"SELECT {_MAILBOX_COLUMNS} FROM mailboxes WHERE state = ? ORDER BY updated DESC NULLS LAST LIMIT ?",
            (MailboxState.RUNNING, limit),
        )
        return [MailboxRow(r[0], r[1], r[2], MailboxState(r[3]), *r[4:]) for r in rows]

    def mailbox_states(self) -> dict[str, MailboxState]:
        """Every mailbox the store knows, by source address."""
        return {
            source: MailboxState(state) for source, state in self._read("SELECT source, state FROM mailboxes")
        }

    def mailbox_sources(self) -> set[str]:
        """The source address of every mailbox the store knows (a run has touched)."""
        return {source for (source,) in self._read("SELECT source FROM mailboxes")}

    def recent_events(self, limit: int) -> list[Event]:
        """The last ``limit`` events, oldest first."""
        from runners.state.mailbox_views import Event

        rows = self._read(
            "SELECT id, ts, level, kind, mailbox, folder, message FROM events ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        return [Event(*r) for r in reversed(rows)]

    # -- the ledger, per wave or mailboxes (`cutover status`) --------------------------------------

    def mailbox_ledger_counts(self, wave: str | None, sources: Sequence[str] = ()) -> list[MailboxLedgerRow]:
        from runners.state.mailbox_views import MailboxLedgerRow

        clause, params = _scope(wave, sources)
        rows = self._read(
            "SELECT mb.id, mb.source, mb.target, mb.wave, mb.state, mb.error, mb.error_kind, mb.updated "
            f"FROM mailboxes mb WHERE {clause} ORDER BY mb.source",
            params,
        )
        in_scope = f"FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE {clause}"
        owner = dict(self._read(f"SELECT f.id, f.mailbox_id {in_scope}", params))
        counted: dict[int, list[int]] = {}
        for folder_id, c in self._folder_counts(f"SELECT f.id {in_scope}", params).items():
            total = counted.setdefault(owner[folder_id], [0, 0, 0, 0, 0])
            for i, value in enumerate((c.copied, c.skipped, c.failed, c.pending, c.copied_bytes)):
                total[i] += value
        return [
            MailboxLedgerRow(r[0], r[1], r[2], r[3], MailboxState(r[4]), r[5], r[6], r[7],
                             *counted.get(r[0], (0, 0, 0, 0, 0)))
            for r in rows
        ]  # fmt: skip

    def folder_errors(self, wave: str | None, sources: Sequence[str] = ()) -> list[FolderErrorRow]:
        from runners.state.mailbox_views import FolderErrorRow

        clause, params = _scope(wave, sources)
        rows = self._read(
            "SELECT mb.source, f.source_path, f.error FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id "
            f"WHERE f.error IS NOT NULL AND {clause} ORDER BY mb.source, f.source_path",
            params,
        )
        return [FolderErrorRow(*r) for r in rows]

    def not_copied(self, wave: str | None, sources: Sequence[str] = ()) -> list[NotCopiedRow]:
        """Every message not copied, each with its attempts (run, time, outcome, the server's words)."""
        from runners.state.mailbox_views import MessageAttempt, NotCopiedRow

        clause, params = _scope(wave, sources)
        history: dict[tuple[int, int, str], list[MessageAttempt]] = {}
        for a in self._read(
            "SELECT a.folder_id, a.uidvalidity, a.src_key, a.run_id, a.at, a.status, a.reason FROM message_attempts a "
            f"JOIN folders f ON f.id = a.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE {clause} "
            "ORDER BY a.id",
            params,
        ):
            attempt = MessageAttempt(a[3], float(a[4]), AttemptStatus(a[5]), a[6])
            history.setdefault((a[0], a[1], a[2]), []).append(attempt)
        rows = self._read(
            "SELECT mb.source, f.source_path, m.folder_id, m.uidvalidity, m.src_key, m.src_uid, m.size, "
            f"m.internaldate, m.status, m.reason, m.attempts FROM {not_copied_source(self._backend.dialect, 'm')} "
            "JOIN folders f ON f.id = m.folder_id "
            f"JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE m.{NOT_COPIED} AND {clause} "
            "ORDER BY mb.source, f.source_path, m.src_uid",
            params,
        )
        out = {
            (r[2], r[3], r[4]): NotCopiedRow(r[0], r[1], r[3], r[5], r[6], r[7], MessageStatus(r[8]), r[9], r[10],
                                             tuple(history.get((r[2], r[3], r[4]), ())))
            for r in rows
        }  # fmt: skip
        if not self.keeps_batch_intents():
            return list(out.values())
        from runners.state.rows import unpack_sent

        # The messages of batch intents are pending, each in place of a row it has from before.
        for mailbox, path, folder_id, validity, packed, digests in self._read(
            "SELECT mb.source, f.source_path, bi.folder_id, bi.uidvalidity, bi.messages, bi.digests FROM batch_intents bi "
            f"JOIN folders f ON f.id = bi.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE {clause}",
            params,
        ):
            for sent in unpack_sent(packed, bytes(digests)):
                key = (folder_id, validity, sent.src_key)
                facts = sent.source
                out[key] = NotCopiedRow(mailbox, path, validity, facts.src_uid, facts.size, facts.internaldate,
                                        MessageStatus.PENDING, None, 1, tuple(history.get(key, ())))  # fmt: skip
        return sorted(out.values(), key=lambda r: (r.mailbox, r.folder, r.uid))

    def copied_totals(self, wave: str) -> tuple[int, int]:
        """Messages and bytes of the wave already copied."""
        n, size = self._read(
            "SELECT COUNT(*), COALESCE(SUM(m.size), 0) FROM messages m JOIN folders f ON f.id = m.folder_id "
            "JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE mb.wave = ? AND m.status = ?",
            (wave, MessageStatus.COPIED),
        )[0]
        return int(n), int(size)

    # -- one mailbox ---------------------------------------------------------------------------------

    def mailbox_detail(self, source: str) -> MailboxDetail:
        """Folders with their ledger counts, and every message not copied with its reason."""
        from runners.state.mailbox_views import FolderDetail, MailboxDetail, MessageIssue

        folders = self._read(
            "SELECT f.id, f.source_path, f.target_name, f.messages, f.bytes, f.excluded, f.error "
            "FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE mb.source = ? ORDER BY f.source_path",
            (source,),
        )
        counts = self._folder_counts(
            "SELECT f.id FROM folders f JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE mb.source = ?",
            [source],
        )
        # Waived ones too: a message an operator skipped stays visible, with who decided and why.
        waiting = (MessageStatus.FAILED, MessageStatus.SKIPPED, MessageStatus.PENDING, MessageStatus.WAIVED)
        issues = self._read(
            "SELECT f.source_path, m.src_uid, m.size, m.internaldate, m.status, m.reason, m.attempts, f.source_name, "
            f"m.src_key, m.uidvalidity FROM {not_copied_source(self._backend.dialect, 'm')} "
            "JOIN folders f ON f.id = m.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id "
            f"WHERE mb.source = ? AND m.status IN (?, ?, ?, ?) AND m.{NOT_COPIED} ORDER BY f.source_path, m.src_uid",
            (source, *waiting),
        )
        return MailboxDetail(
            source,
            tuple(
                FolderDetail(r[1], r[2], r[3], r[4], *counts.get(r[0], _NO_COUNTS), r[5], r[6])
                for r in folders
            ),
            self._with_in_flight(
                source,
                [
                    MessageIssue(r[0], r[1], r[2], r[3], MessageStatus(r[4]), r[5], r[6], r[7], r[8], r[9])
                    for r in issues
                ],
            ),
        )

    def _folder_counts(self, folder_ids: str, params: Sequence[object]) -> dict[int, _FolderCounts]:
        """Per folder of ``folder_ids`` (a query of folder ids over ``params``): copied, bytes copied,
        skipped, failed, pending.

        One statement, so one snapshot of a ledger a run is writing: every row's count and size in the
        ledger's own order (its key starts with the folder), and the rows not copied by status from
        their partial index; copied is the difference. Summing each status over the joined rows,
        grouped by mailbox or folder, sorted every row first: for one folder of 300,000 messages a
        mailbox's detail took 0.84 s, `status` 0.87 s and a viewer's poll of its row 0.34 s; 0.07–0.09 s so."""
        in_flight = self.keeps_batch_intents()  # not in a store from before them, opened read-only
        rows = self._read(
            f"SELECT m.folder_id, '', COUNT(*), COALESCE(SUM(m.size), 0) FROM messages m "
            f"WHERE m.folder_id IN ({folder_ids}) GROUP BY m.folder_id UNION ALL "
            f"SELECT m.folder_id, m.status, COUNT(*), COALESCE(SUM(m.size), 0) "
            f"FROM {not_copied_source(self._backend.dialect, 'm')} "
            f"WHERE m.folder_id IN ({folder_ids}) AND m.{NOT_COPIED} GROUP BY m.folder_id, m.status"
            + (
                # The messages of batch intents (APPENDs in flight, or cut short by a crash): pending.
                " UNION ALL SELECT bi.folder_id, '+', COALESCE(SUM(bi.carried), 0), 0 FROM batch_intents bi "
                f"WHERE bi.folder_id IN ({folder_ids}) GROUP BY bi.folder_id"
                if in_flight
                else ""
            ),
            [*params, *params, *(params if in_flight else ())],
        )
        totals: dict[int, tuple[int, int]] = {}
        open_rows: dict[int, dict[str, tuple[int, int]]] = {}
        carried: dict[int, int] = {}
        for folder_id, status, count, size in rows:
            if status == "":
                totals[folder_id] = (int(count), int(size))
            elif status == "+":
                carried[folder_id] = int(count)
            else:
                open_rows.setdefault(folder_id, {})[status] = (int(count), int(size))
        counts: dict[int, _FolderCounts] = {}
        for folder_id in carried.keys() - totals.keys():  # a folder's first batch, in flight
            totals[folder_id] = (0, 0)
        for folder_id, (count, size) in totals.items():
            not_copied = open_rows.get(folder_id, {})
            counts[folder_id] = _FolderCounts(
                count - sum(n for n, _ in not_copied.values()),
                size - sum(b for _, b in not_copied.values()),
                not_copied.get(MessageStatus.SKIPPED, (0, 0))[0],
                not_copied.get(MessageStatus.FAILED, (0, 0))[0],
                not_copied.get(MessageStatus.PENDING, (0, 0))[0] + carried.get(folder_id, 0),
            )
        return counts

    def _with_in_flight(self, source: str, issues: list[MessageIssue]) -> tuple[MessageIssue, ...]:
        """``issues`` with the messages of the mailbox's batch intents as pending (each in place of
        its row, a failure being retried), in the same order: by folder, then source UID."""
        from runners.state.mailbox_views import MessageIssue
        from runners.state.rows import unpack_sent

        if not self.keeps_batch_intents():
            return tuple(issues)
        intents = self._read(
            "SELECT f.source_path, f.source_name, bi.uidvalidity, bi.messages, bi.digests FROM batch_intents bi "
            "JOIN folders f ON f.id = bi.folder_id JOIN mailboxes mb ON mb.id = f.mailbox_id WHERE mb.source = ?",
            (source,),
        )
        if not intents:
            return tuple(issues)
        pending = {
            (path, validity, sent.src_key): MessageIssue(
                path, sent.source.src_uid, sent.source.size, sent.source.internaldate, MessageStatus.PENDING,
                None, 1, name, sent.src_key, validity,
            )
            for path, name, validity, packed, digests in intents
            for sent in unpack_sent(packed, bytes(digests))
        }  # fmt: skip
        kept = [i for i in issues if (i.folder, i.uidvalidity, i.key) not in pending]
        return tuple(sorted([*kept, *pending.values()], key=lambda i: (i.folder, i.uid)))

    def message_history(
        self, source: str, folder: str, uid: int, *, key: str | None = None, uidvalidity: int | None = None
    ) -> tuple[MessageAttempt, ...]:
        """Every recorded attempt on one message (``folder`` as shown: the source path), oldest first.

        ``key`` and ``uidvalidity`` (from ``MessageIssue``) pin the message exactly and make this an
        index lookup, cheap enough to repeat on every poll (``uid`` is then not needed); without a key
        the UID is looked up in the folder's ledger rows.
        """
        from runners.state.mailbox_views import MessageAttempt

        where = ["mb.source = ?", "f.source_path = ?"]
        params: list[object] = [source, folder]
        if key is None:
            # The ledger row by its UID first (one pass over the folder's rows), then its attempts.
            joined = (
                "messages m JOIN message_attempts a ON a.folder_id = m.folder_id AND a.uidvalidity = m.uidvalidity "
                "AND a.src_key = m.src_key JOIN folders f ON f.id = m.folder_id"
            )
            where += ["m.src_uid = ?", "m.status != ?"]
            params += [uid, MessageStatus.SUPERSEDED]
        else:
            joined = "message_attempts a JOIN folders f ON f.id = a.folder_id"
            where.append("a.src_key = ?")
            params.append(key)
        if uidvalidity is not None:
            where.append("a.uidvalidity = ?")
            params.append(uidvalidity)
        rows = self._read(
            f"SELECT a.run_id, a.at, a.status, a.reason FROM {joined} JOIN mailboxes mb ON mb.id = f.mailbox_id "
            f"WHERE {' AND '.join(where)} ORDER BY a.id",
            params,
        )
        return tuple(MessageAttempt(r[0], float(r[1]), AttemptStatus(r[2]), r[3]) for r in rows)


def _where(
    query: MailboxQuery, dialect: str, trigram_matches: Callable[[str, int], int | None]
) -> tuple[str, list[object]]:
    where: list[str] = []
    params: list[object] = []
    if query.source is not None:
        where.append("source = ?")
        params.append(query.source)
    if query.wave:
        where.append("wave = ?")
        params.append(query.wave)
    if query.attention:
        where.append(_ATTENTION)
    if query.text:  # over the whole fleet: from a trigram index where one can answer (mailbox_search)
        clause, values = search_clause(query.text, dialect, trigram_matches)
        where.append(clause)
        params += values
    return (f" WHERE {' AND '.join(where)}" if where else ""), params


def _scope(wave: str | None, sources: Sequence[str]) -> tuple[str, list[object]]:
    """The WHERE clause over mailboxes joined as ``mb`` for one wave and/or some mailboxes."""
    where, params = ["1 = 1"], list[object]()
    if wave:
        where.append("mb.wave = ?")
        params.append(wave)
    if sources:
        where.append(f"mb.source IN ({','.join('?' * len(sources))})")
        params.extend(sources)
    return " AND ".join(where), params
