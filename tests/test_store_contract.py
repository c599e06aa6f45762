"""The state store's contract, held on both of its databases: SQLite (a file) and PostgreSQL (a private
cluster on loopback, tests/servers/postgres.py). Every test here runs once per backend, and the last
one plays one history into both and compares every read: the same rows, in the same order.

What the store promises its callers: the ledger (intents, results, unsent and matched messages, the
attempt history, superseded UIDVALIDITYs, waivers), mailboxes and their claims, runs, controls, the
audit trail, check history, the window's steps and leases, pacing, the survey, and upgrades of a
store made by an older version (columns added on open).
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from servers.postgres import PostgresServer

from checks.history import record
from checks.model import Finding, Severity, State
from checks.model import Outcome as CheckOutcome
from checks.runner import CheckRun
from runners.model import FolderState
from runners.state.backend import Backend, SqliteBackend
from runners.state.errors import StoreError
from runners.state.mailbox_views import MailboxQuery
from runners.state.pacing import PacingRow
from runners.state.pg_backend import PostgresBackend
from runners.state.rows import (
    BatchIntent,
    EarlierCopy,
    Intent,
    Matched,
    MessageRef,
    Outcome,
    Sent,
    SentBatch,
    SourceFacts,
    SyncedFolder,
    Unsent,
)
from runners.state.statuses import ControlAction, MessageStatus, StepStatus
from runners.state.store import MailboxProgress, StateStore
from runners.state.survey import SurveyRow
from runners.state.wave_step_rows import Actor

BACKENDS = ("sqlite", "postgresql")
#: Larger than PostgreSQL's INTEGER: UIDVALIDITY is 32-bit unsigned, byte counts pass 2^31.
BIG_UIDVALIDITY = 4_000_000_000
BIG_SIZE = 5_000_000_000

BackendFactory = Callable[..., Backend]


@pytest.fixture(params=BACKENDS)
def backend_factory(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    """``backend_factory(read_only=False)``: the same store each call, on this test's backend."""
    if request.param == "sqlite":
        return lambda read_only=False: SqliteBackend(tmp_path / "state.db", read_only=read_only)
    server: PostgresServer = request.getfixturevalue("postgres_server")
    url = server.url(server.database())
    return lambda read_only=False: PostgresBackend(url, server.password, read_only=read_only)


@pytest.fixture
def store(backend_factory: BackendFactory) -> Iterator[StateStore]:
    opened = StateStore(backend_factory())
    yield opened
    opened.close()


def _facts(uid: int, size: int = 100) -> SourceFacts:
    return SourceFacts(uid, size, "01-Jan-2024 10:00:00 +0000", "\\Seen")


def _folder(store: StateStore, source: str = "alice@old", name: str = "INBOX") -> tuple[int, int]:
    mailbox = store.upsert_mailbox(source, source.replace("old", "new"), "pilot")
    return mailbox, store.folder(mailbox, name, name, name, None).id


# -- the ledger ------------------------------------------------------------------------------------


def test_intents_results_and_the_attempt_history(store: StateStore) -> None:
    mailbox, folder = _folder(store)
    run = store.start_run("pilot", "full", 2)
    refs = [MessageRef(folder, BIG_UIDVALIDITY, str(uid)) for uid in (1, 2, 3)]
    store.record_intents(
        [
            Intent(r, _facts(int(r.src_key), BIG_SIZE), bytes([int(r.src_key)]) * 32, "INBOX", "41", run)
            for r in refs
        ]
    )
    assert {p.ref.src_key: (p.sha256, p.recovery_mark) for p in store.pending(folder)} == {
        "1": (b"\x01" * 32, "41"), "2": (b"\x02" * 32, "41"), "3": (b"\x03" * 32, "41"),
    }  # fmt: skip
    store.record_results(
        [Outcome(refs[0], "copied", "40", None), Outcome(refs[1], "failed", None, "NO [LIMIT] too big")]
    )
    store.forget_pending([refs[2]])
    ledger = store.ledger(folder, BIG_UIDVALIDITY)
    assert set(ledger) == {"1", "2"}
    assert (ledger["1"].status, ledger["1"].target_id, ledger["1"].recovery_mark, ledger["1"].size) == (
        "copied", "40", None, BIG_SIZE,
    )  # fmt: skip
    assert (ledger["2"].status, ledger["2"].reason) == ("failed", "NO [LIMIT] too big")
    assert store.folder_needs_work(folder)
    assert [(f.src_uid, f.reason) for f in store.failed_in_run(folder, BIG_UIDVALIDITY, run)] == [
        (2, "NO [LIMIT] too big")
    ]
    assert store.mapped_target_ids(mailbox, "INBOX") == {"40"}

    # A retry that fails again, then an operator's waiver: three attempts, oldest first.
    store.record_intents([Intent(refs[1], _facts(2), b"\x02" * 32, "INBOX", "42", run)])
    store.record_results([Outcome(refs[1], "failed", None, "NO again")])
    assert store.waive_message("alice@old", "INBOX", 2, "too big for the target", "sam@ops") == 1
    history = store.message_history("alice@old", "INBOX", 2)
    assert [(a.status, a.reason) for a in history] == [
        ("failed", "NO [LIMIT] too big"),
        ("failed", "NO again"),
        ("waived", "not copied, decided by sam@ops: too big for the target"),
    ]
    assert store.ledger(folder, BIG_UIDVALIDITY)["2"].status == "waived"
    assert not store.folder_needs_work(folder)


def _batch(folder: int, keys: list[str], mark: str, run: int, uidvalidity: int = 7) -> BatchIntent:
    return BatchIntent(
        folder, uidvalidity, "INBOX", mark, run,
        [Sent(k, _facts(int(k), 1000 + int(k)), bytes([int(k)]) * 32, 1010 + int(k)) for k in keys],
    )  # fmt: skip


def test_a_batch_intent_stands_for_its_messages_until_the_target_answered(store: StateStore) -> None:
    """The copy's ledger writes: one batch intent before the APPEND, each message's row once the
    target answered, with the next batch's intent. Until then the messages are pending to every
    reader: recovery, the pass's own reads, the cockpit's counts and lists, verification."""
    mailbox, folder = _folder(store)
    run = store.start_run("pilot", "full", 1)
    store.record_unsent([Unsent(MessageRef(folder, 7, "2"), _facts(2), "failed", "NO earlier", run)])
    first = _batch(folder, ["1", "2", "3"], "41", run)
    first_id = store.record_sent([], first)
    assert first_id is not None

    pending = store.pending(folder)
    assert [(p.ref.src_key, p.sha256, p.recovery_mark, p.run_id, p.intent_id) for p in pending] == [
        (k, bytes([int(k)]) * 32, "41", run, first_id) for k in ("1", "2", "3")
    ]
    assert store.folder_needs_work(folder)
    ledger = store.ledger(folder, 7)
    assert {k: (e.status, e.size, e.sent_size, e.recovery_mark) for k, e in ledger.items()} == {
        k: ("pending", 1000 + int(k), 1010 + int(k), "41") for k in ("1", "2", "3")
    }  # the failed row of "2" is being retried: pending while its intent stands
    assert store.ledger_for(folder, 7, ["2", "9"])["2"].status == "pending"
    detail = store.mailbox_detail("alice@old")
    assert [(f.pending, f.failed) for f in detail.folders] == [(3, 1)]
    assert [(i.uid, i.status) for i in detail.issues] == [(1, "pending"), (2, "pending"), (3, "pending")]
    (counts,) = store.mailbox_ledger_counts("pilot")
    assert (counts.pending, counts.copied) == (3, 0)
    assert [(r.uid, r.status, [a.reason for a in r.history]) for r in store.not_copied("pilot")] == [
        (1, "pending", []), (2, "pending", ["NO earlier"]), (3, "pending", []),
    ]  # fmt: skip

    # The target answered: each row written whole with the next batch's intent, the first deleted.
    answered = SentBatch(
        first_id,
        first,
        [("copied", "40", None), ("failed", None, "NO [LIMIT] too big"), ("copied", "41", None)],
    )
    second_id = store.record_sent([answered], _batch(folder, ["4"], "42", run))
    assert [p.ref.src_key for p in store.pending(folder)] == ["4"]
    ledger = store.ledger(folder, 7)
    assert {
        k: (e.status, e.target_id, e.reason, e.sha256, e.size, e.sent_size, e.flags)
        for k, e in ledger.items()
    } == {
        "1": ("copied", "40", None, b"\x01" * 32, 1001, 1011, "\\Seen"),
        "2": ("failed", None, "NO [LIMIT] too big", b"\x02" * 32, 1002, 1012, "\\Seen"),
        "3": ("copied", "41", None, b"\x03" * 32, 1003, 1013, "\\Seen"),
        "4": ("pending", None, None, b"\x04" * 32, 1004, 1014, "\\Seen"),
    }
    assert [(a.status, a.reason) for a in store.message_history("alice@old", "INBOX", 2)] == [
        ("failed", "NO earlier"), ("failed", "NO [LIMIT] too big"),
    ]  # fmt: skip
    assert store.mapped_target_ids(mailbox, "INBOX") == {"40", "41"}
    assert (
        store.record_sent(
            [SentBatch(second_id or 0, _batch(folder, ["4"], "42", run), [("copied", "42", None)])]
        )
        is None
    )
    assert store.pending(folder) == []
    assert {r["n"] for r in store.query("SELECT COUNT(*) AS n FROM batch_intents")} == {0}
    assert store.folder_needs_work(folder)  # "2" failed


def test_recovery_settles_batch_intents_and_pending_rows_of_an_older_version_together(
    store: StateStore,
) -> None:
    """A store upgraded in the middle of a crashed copy holds pending rows written per message (the
    older version's intents) beside batch intents: both are pending, and one settlement records
    what the target had as copied, forgets the rest and deletes the intents, in one transaction."""
    mailbox, folder = _folder(store)
    run = store.start_run("pilot", "full", 1)
    older = [MessageRef(folder, 7, k) for k in ("5", "6")]
    store.record_intents(
        [Intent(r, _facts(int(r.src_key)), b"\xee" * 32, "INBOX", "30", run, 99) for r in older]
    )
    batch_id = store.record_sent([], _batch(folder, ["1", "2"], "41", run))
    pending = {p.ref.src_key: p for p in store.pending(folder)}
    assert set(pending) == {"1", "2", "5", "6"}
    assert (pending["5"].intent_id, pending["5"].sent, pending["1"].intent_id) == (None, None, batch_id)

    store.settle_pending([(pending["1"], "50"), (pending["5"], "55")], [pending["2"], pending["6"]], "found")
    assert store.pending(folder) == []
    ledger = store.ledger(folder, 7)
    assert {k: (e.status, e.target_id, e.reason, e.sha256, e.sent_size) for k, e in ledger.items()} == {
        "1": ("copied", "50", "found", b"\x01" * 32, 1011),
        "5": ("copied", "55", "found", b"\xee" * 32, 99),
    }  # "2" had no row and gets none: copied again; "6"'s pending row is gone
    assert store.mapped_target_ids(mailbox, "INBOX") == {"50", "55"}
    assert not store.folder_needs_work(folder)


def test_one_batch_of_outcomes_with_and_without_reasons_and_statuses_as_the_engine_passes_them(
    store: StateStore,
) -> None:
    """The engine's outcomes carry ``MessageStatus`` members and a reason only when one failed; a row
    copied on a retry loses the reason its failure left."""
    _mailbox, folder = _folder(store)
    run = store.start_run("pilot", "full", 1)
    refs = [MessageRef(folder, 7, str(uid)) for uid in (1, 2, 3)]
    store.record_intents([Intent(r, _facts(int(r.src_key)), b"\xab" * 32, "INBOX", "9", run) for r in refs])
    store.record_batch(
        [
            Outcome(refs[0], MessageStatus.COPIED, "10", None),
            Outcome(refs[1], MessageStatus.FAILED, None, "NO [OVERQUOTA] full"),
            Outcome(refs[2], MessageStatus.COPIED, "11", None),
        ],
        [Intent(refs[1], _facts(2), b"\xcd" * 32, "INBOX", "12", run)],  # its retry's intent
    )
    store.record_results([Outcome(refs[1], MessageStatus.COPIED, "12", None)])
    ledger = store.ledger(folder, 7)
    assert {k: (e.status, e.target_id, e.reason, e.sha256) for k, e in ledger.items()} == {
        "1": ("copied", "10", None, b"\xab" * 32),
        "2": ("copied", "12", None, b"\xcd" * 32),
        "3": ("copied", "11", None, b"\xab" * 32),
    }
    assert all(type(e.status) is str and type(e.sha256) is bytes for e in ledger.values())
    assert [(a.status, a.reason) for a in store.message_history("alice@old", "INBOX", 2)] == [
        ("failed", "NO [OVERQUOTA] full")
    ]


def test_a_match_over_a_failed_row_takes_the_sources_flags_as_they_are_now(store: StateStore) -> None:
    """A message that failed once, then found on the target by content: the copy was just given the
    source's flags of now, and the row says so (verify holds the target's flags against it)."""
    _, folder = _folder(store)
    run = store.start_run("pilot", "full", 1)
    ref = MessageRef(folder, 5, "1")
    store.record_unsent([Unsent(ref, _facts(1), "failed", "NO try later", run)])
    now = SourceFacts(1, 100, "01-Jan-2024 10:00:00 +0000", "$Label1 \\Flagged")
    store.record_matched([Matched(ref, now, b"a" * 32, "INBOX", "7", run)])
    row = store.ledger(folder, 5)["1"]
    assert (row.status, row.target_id, row.flags) == ("copied", "7", "$Label1 \\Flagged")


def test_unsent_matched_flags_and_a_new_uidvalidity(store: StateStore) -> None:
    mailbox, folder = _folder(store)
    run = store.start_run("pilot", "full", 1)
    old = [MessageRef(folder, 5, k) for k in ("1", "2", "3")]
    store.record_matched([Matched(old[0], _facts(1), b"a" * 32, "INBOX", "7", run)])
    store.record_unsent([Unsent(old[1], _facts(2), "skipped", "too large", run)])
    store.record_unsent([Unsent(old[2], _facts(3), "failed", "unreadable", run)])
    store.update_flags(folder, 5, [("1", "\\Seen \\Flagged")])
    ledger = store.ledger(folder, 5)
    assert (ledger["1"].status, ledger["1"].reason, ledger["1"].flags) == (
        "copied", "found on the target by content", "\\Seen \\Flagged",
    )  # fmt: skip
    assert [(r.uid, r.status, r.attempts) for r in store.not_copied("pilot")] == [
        (2, "skipped", 1),
        (3, "failed", 1),
    ]
    assert store.copied_totals("pilot") == (1, 100)

    # The source's UIDVALIDITY changed: the old rows are voided, kept until a pass completes.
    assert store.supersede_other_uidvalidity(folder, 6)
    assert {e.status for e in store.ledger(folder, 5).values()} == {"superseded"}
    # What a keyed target matches from: only rows that had a copy in that target folder.
    assert store.superseded_copies(folder, "INBOX") == [EarlierCopy(old[0], b"a" * 32, "7")]
    assert store.superseded_copies(folder, "Other") == []
    store.drop_superseded(folder)
    assert store.superseded_copies(folder, "INBOX") == []
    assert store.ledger(folder, 5) == {}
    assert not store.supersede_other_uidvalidity(folder, 6)
    assert store.not_copied("pilot") == []
    store.folder_done(folder, FolderState(6, 10, 9, BIG_UIDVALIDITY), source_bytes=BIG_SIZE)
    again = store.folder(mailbox, "INBOX", "INBOX", "INBOX", None)
    assert (again.id, again.state) == (folder, FolderState(6, 10, 9, BIG_UIDVALIDITY))
    assert store.synced_folders("alice@old") == {"INBOX": SyncedFolder(folder, 10)}


# -- mailboxes, claims and what viewers read -----------------------------------------------------


def test_mailbox_claims_progress_and_viewer_reads(store: StateStore) -> None:
    run = store.start_run("pilot", "full", 4)
    ids = {}
    for source, done in (("Carol@old", 0), ("alice@old", 5), ("bob@old", 10)):
        mailbox, _ = _folder(store, source)
        ids[source] = mailbox
        assert store.claim_mailbox(mailbox, run) is None
        store.mailbox_progress(
            mailbox, MailboxProgress(10, 1000, done, done * 100, 1 if done == 5 else 0, 0, "INBOX")
        )
    store.release_mailbox(ids["bob@old"], "ok")
    store.release_mailbox(ids["alice@old"], "partial", "1 message failed", "message")
    # Another holder sees the live claim of a running mailbox.
    store.save_target_layout(ids["Carol@old"], '{"INBOX": "INBOX"}')
    assert store.target_layout(ids["Carol@old"]) == '{"INBOX": "INBOX"}'

    # Order by source sorts as bytes on both (uppercase first), the text filter ignores ASCII case.
    assert [r.source for r in store.mailbox_rows(MailboxQuery())] == ["Carol@old", "alice@old", "bob@old"]
    assert [r.source for r in store.mailbox_rows(MailboxQuery(text="CAROL"))] == ["Carol@old"]
    assert [r.source for r in store.mailbox_rows(MailboxQuery(order="progress"))] == [
        "bob@old", "alice@old", "Carol@old",
    ]  # fmt: skip
    assert [r.source for r in store.mailbox_rows(MailboxQuery(order="failed", limit=1))] == ["alice@old"]
    assert {r.source for r in store.mailbox_rows(MailboxQuery(attention=True))} == {"Carol@old", "alice@old"}
    assert store.count_mailboxes(MailboxQuery(wave="pilot", attention=True)) == 2
    assert [r.source for r in store.active_mailboxes(5)] == ["Carol@old"]
    totals = {(t.state, t.mailboxes, t.messages_done, t.bytes_total) for t in store.wave_state_totals()}
    assert totals == {("running", 1, 0, 1000), ("partial", 1, 5, 1000), ("ok", 1, 10, 1000)}
    assert all(type(v) is int for t in store.wave_state_totals() for v in dataclasses.astuple(t)[2:])

    changed = store.changed_mailboxes((0.0, ""), limit=2)
    assert len(changed) == 2
    rest = store.changed_mailboxes((changed[-1][9] or 0.0, changed[-1][0]), limit=None)
    assert {c[0] for c in changed + rest} == set(ids)
    assert store.mailbox_states() == {"Carol@old": "running", "alice@old": "partial", "bob@old": "ok"}
    assert store.mailbox_sources() == set(ids)


def test_ledger_sums_for_viewers(store: StateStore) -> None:
    _, folder = _folder(store)
    _, errored = _folder(store, "alice@old", "Junk")
    store.folder_error(errored, "NO [NOPERM] denied")
    run = store.start_run("pilot", "full", 1)
    refs = [MessageRef(folder, 1, str(k)) for k in range(1, 5)]
    store.record_intents(
        [Intent(r, _facts(int(r.src_key), 1000), b"x" * 32, "INBOX", None, run) for r in refs]
    )
    store.record_results(
        [Outcome(r, "copied", r.src_key, None) for r in refs[:3]] + [Outcome(refs[3], "failed", None, "NO")]
    )
    store.folder_done(folder, FolderState(1, 9, 8, None), source_bytes=8000)
    progress = store.ledger_progress(["alice@old", "nobody@old"])
    assert tuple(progress["alice@old"]) == (3, 3000, 1, 0, 8, 8000, 1)
    assert tuple(progress["nobody@old"]) == (0, 0, 0, 0, 0, 0, 0)
    (counts,) = store.mailbox_ledger_counts("pilot")
    counted = (counts.copied, counts.skipped, counts.failed, counts.pending, counts.bytes_copied)
    assert counted == (3, 0, 1, 0, 3000)
    # An APPEND in flight: its intent only. The detail's counts are the rows' (copied from all
    # rows less those not copied, which come from the partial index).
    store.record_intents([Intent(MessageRef(folder, 1, "5"), _facts(5, 500), b"y" * 32, "INBOX", None, run)])
    detail = store.mailbox_detail("alice@old")
    assert [
        (f.source, f.copied, f.copied_bytes, f.skipped, f.failed, f.pending, f.error) for f in detail.folders
    ] == [
        ("INBOX", 3, 3000, 0, 1, 1, None), ("Junk", 0, 0, 0, 0, 0, "NO [NOPERM] denied"),
    ]  # fmt: skip
    assert [(i.uid, i.status) for i in detail.issues] == [(4, "failed"), (5, "pending")]
    assert [(e.source, e.source_path) for e in store.folder_errors("pilot")] == [("alice@old", "Junk")]
    assert store.folder_failed(errored) and not store.folder_failed(folder)


# -- runs, controls, events and the audit trail ---------------------------------------------------


def test_runs_controls_and_the_audit_trail(store: StateStore) -> None:
    first = store.start_run("pilot", "full", 2)
    store.finish_run(first, "ok", {"seconds": 12.5, "copied": 3})
    second = store.start_run("pilot", "delta", 2)
    assert [r.id for r in store.recent_runs("pilot")] == [second, first]
    assert [r.id for r in store.running_runs()] == [second]
    finished = store.last_finished_run("pilot")
    assert finished is not None and finished.id == first and store.has_finished_run("pilot")
    assert [(s.id, s.summary) for s in store.finished_run_summaries()] == [
        (first, {"copied": 3, "seconds": 12.5})
    ]
    assert store.last_pass_seconds("pilot", "full") == 12.5

    before = store.last_control_id()
    pause = store.request_control(
        ControlAction.PAUSE, wave="pilot", mailbox="alice@old", requested_by="sam@ops"
    )
    store.request_control(ControlAction.RESUME, wave=None, mailbox=None, requested_by="nina@ops")
    assert [(c.id, c.action, c.mailbox) for c in store.controls_after(before)][:1] == [
        (pause, "pause", "alice@old")
    ]
    store.mark_controls_seen(pause)
    assert [c.action for c in store.controls_after(pause)] == ["resume"]
    # A run's watermark: the requests after it apply to the run (on every host), older ones don't.
    third = store.start_run("pilot", "delta", 2)
    after = store.request_control(ControlAction.CANCEL, wave="pilot", mailbox=None, requested_by=None)
    joined = store.run(third)
    assert joined is not None and joined.status == "running" and store.run(third + 1000) is None
    assert joined.controls_from is not None and joined.controls_from < after
    assert [c.id for c in store.controls_after(joined.controls_from)] == [after]

    store.event(second, "warning", "folder-failed", "INBOX: NO", mailbox="alice@old", folder="INBOX")
    store.record_operator_action("sam@ops", "launch of wave pilot")
    assert [(e.kind, e.message) for e in store.recent_events(2)] == [
        ("folder-failed", "INBOX: NO"), ("operator", "sam@ops: launch of wave pilot"),
    ]  # fmt: skip
    actions = [(a.action, a.who) for a in store.audit_trail("pilot")]
    assert ("pause", "sam@ops") in actions and ("resume", "nina@ops") in actions
    assert ("launch", "sam@ops") in actions


# -- readiness checks -----------------------------------------------------------------------------


def _blocker(check: str, obj: str) -> Finding:
    return Finding(check, Severity.BLOCKER, "mailbox", obj, f"{check} fails for {obj}", observed="NO")


def test_check_history_and_the_findings_page(store: StateStore) -> None:
    outcomes = [
        CheckOutcome("SRC-LOGIN-002", "Login", "source", State.OK, [_blocker("SRC-LOGIN-002", "Carol")]),
        CheckOutcome("TGT-SIZE-006", "Size", "capacity", State.OK, [_blocker("TGT-SIZE-006", "alice")]),
    ]
    first, _ = record(store, CheckRun("pre", outcomes, started=1000.0, seconds=1.0), "all", "sam@ops")
    second, _ = record(
        store, CheckRun("pre", [CheckOutcome("TGT-SIZE-006", "Size", "capacity", State.ERROR, reason="BAD")],
                        started=2000.0, seconds=1.0), "capacity:", "nina@ops",
    )  # fmt: skip
    last = store.last_check_run(scope="capacity:")
    assert last is not None and last.id == second
    assert [(f.check_id, f.object_id) for f in store.latest_findings()] == [
        ("SRC-LOGIN-002", "Carol"), ("TGT-SIZE-006", "alice"),
    ]  # fmt: skip
    rows, matching = store.latest_findings_page("carol")  # case as SQLite's LIKE: ASCII ignored
    assert matching == 1 and [f.object_id for f in rows] == ["Carol"]
    rows, matching = store.latest_findings_page("nothing", sources=["alice"])
    assert matching == 1 and [f.object_id for f in rows] == ["alice"]
    rows, matching = store.latest_findings_page(limit=1)
    assert matching == 2 and [f.object_id for f in rows] == ["Carol"]
    assert store.latest_finding_counts() == {"source": {"blocker": 1}, "capacity": {"blocker": 1}}
    assert [(c.check_id, c.state) for c in store.latest_checks_not_ok()] == [("TGT-SIZE-006", "error")]
    assert [(c.category, c.run_id, c.operator) for c in store.categories_checked()] == [
        ("capacity", second, "nina@ops"), ("source", first, "sam@ops"),
    ]  # fmt: skip
    assert store.latest_blockers() == [
        ("mailbox", "Carol", "SRC-LOGIN-002"),
        ("mailbox", "alice", "TGT-SIZE-006"),
    ]


# -- the window: steps, leases -------------------------------------------------------------------


def test_wave_steps_and_the_wave_lease(store: StateStore) -> None:
    actor = Actor("ops", "jump1", "192.0.2.9 52100")
    step = store.begin_step("pilot", "ready", actor, {"reason": "go"})
    store.end_step(step, StepStatus.DONE, checked=[{"copied": True}], did={"n": 1})
    switched = store.begin_step("pilot", "switched", actor, {})
    store.end_step(switched, StepStatus.DONE)
    first, _ = store.wave_steps("pilot")
    assert (first.step, first.status, first.actor, first.params, first.checked, first.did) == (
        "ready", "done", actor, {"reason": "go"}, [{"copied": True}], {"n": 1},
    )  # fmt: skip
    assert store.steps_done("pilot") == ["ready", "switched"] and store.wave_switched("pilot")
    assert [w.stage for w in store.wave_standings(["pilot", "later"])] == ["switched", "copying"]

    assert store.take_wave_lease("pilot", "ops@jump1", 60.0) is None
    assert store.take_wave_lease("pilot", "ops@jump1", 60.0) is None  # renewed by its holder
    lease = store.wave_lease("pilot")
    assert lease is not None and lease.holder == "ops@jump1" and lease.expires - lease.taken == 60.0
    store.release_wave_lease("pilot")
    assert store.wave_lease("pilot") is None


# -- pacing and the survey ----------------------------------------------------------------------


def test_pacing_rows_are_replaced_and_the_most_throttled_come_first(store: StateStore) -> None:
    run = store.start_run("pilot", "full", 1)
    now = time.time()

    def row(scope: str, until: float | None, back_offs: int) -> PacingRow:
        return PacingRow(
            run, scope, 1, 4, until, "429" if until else None, back_offs, 10, 100, 0, None, 0.5, now
        )

    store.record_pacing([row("quiet", None, 0), row("ews:svc", now + 30, 1)])
    store.record_pacing([row("ews:svc", now + 60, 2), row("graph:bob", now + 10, 1)])
    assert [(r.scope, r.back_offs) for r in store.running_pacing("pilot")] == [
        ("ews:svc", 2), ("graph:bob", 1), ("quiet", 0),
    ]  # fmt: skip


def test_the_survey_sums_per_mailbox(store: StateStore) -> None:
    store.save_survey(
        [SurveyRow("alice", "INBOX", 10, BIG_SIZE, 100, 1.0), SurveyRow("alice", "Sent", 2, 20, 10, 1.0)]
    )
    store.save_survey([SurveyRow("alice", "Sent", 3, 30, 10, 2.0)])
    assert store.surveyed_bytes() == {"alice": BIG_SIZE + 30}
    assert store.survey_totals() == {"alice": (13, BIG_SIZE + 30)}


# -- opening: upgrades, read-only ----------------------------------------------------------------


def test_a_store_made_before_a_column_existed_gets_it_on_open(backend_factory: BackendFactory) -> None:
    store = StateStore(backend_factory())
    mailbox = store.upsert_mailbox("alice@old", "alice@new", "pilot")
    with store.transaction() as db:
        db.execute("ALTER TABLE mailboxes DROP COLUMN current_folder")
        db.execute("ALTER TABLE folders DROP COLUMN bytes")
    store.close()
    assert "current_folder" not in StateStore(backend_factory(read_only=True)).backend.columns("mailboxes")
    upgraded = StateStore(backend_factory())
    assert "current_folder" in upgraded.backend.columns("mailboxes")
    assert "bytes" in upgraded.backend.columns("folders")
    upgraded.mailbox_progress(mailbox, MailboxProgress(1, 2, 1, 2, 0, 0, "Sent"))
    assert [r.current_folder for r in upgraded.mailbox_rows(MailboxQuery())] == ["Sent"]
    assert upgraded.query("SELECT value FROM meta WHERE key = 'schema'")[0]["value"] == "1"


def test_the_bytes_sent_are_kept_and_a_store_from_before_them_still_reads(
    backend_factory: BackendFactory,
) -> None:
    """``sent_size`` (what verify holds an IMAP copy's size to) is kept by an intent and by a match;
    a store made before the column, opened read-only (verify never upgrades), reads it as unknown."""
    store = StateStore(backend_factory())
    _, folder = _folder(store)
    run = store.start_run("pilot", "full", 1)
    sent, matched = MessageRef(folder, 5, "1"), MessageRef(folder, 5, "2")
    # A Maildir file of 100 bytes with bare LFs, sent as 104 bytes of CRLF.
    store.record_intents([Intent(sent, _facts(1, 100), b"s" * 32, "INBOX", "9", run, 104)])
    store.record_results([Outcome(sent, "copied", "9", None)])
    store.record_matched([Matched(matched, _facts(2, 50), b"m" * 32, "INBOX", "10", run, 52)])
    ledger = store.ledger(folder, 5)
    assert {k: (e.size, e.sent_size) for k, e in ledger.items()} == {"1": (100, 104), "2": (50, 52)}

    with store.transaction() as db:
        db.execute("ALTER TABLE messages DROP COLUMN sent_size")
    store.close()
    old = StateStore(backend_factory(read_only=True))
    assert {k: (e.status, e.sent_size) for k, e in old.ledger(folder, 5).items()} == {
        "1": ("copied", None), "2": ("copied", None),
    }  # fmt: skip
    assert StateStore(backend_factory()).ledger(folder, 5)["1"].sent_size is None  # upgraded: added, empty


def test_a_read_only_store_reads_and_refuses_every_write(backend_factory: BackendFactory) -> None:
    empty = StateStore(backend_factory(read_only=True))
    assert empty.recent_runs() == [] and empty.mailbox_states() == {}  # nothing created yet: empty
    assert not empty.backend.exists()
    writer = StateStore(backend_factory())
    writer.upsert_mailbox("alice@old", "alice@new", "pilot")
    reader = StateStore(backend_factory(read_only=True))
    assert reader.mailbox_states() == {"alice@old": "pending"} and reader.backend.exists()
    with pytest.raises(StoreError, match="read-only"):
        reader.upsert_mailbox("bob@old", "bob@new", "pilot")
    with pytest.raises(StoreError, match="read-only"):
        reader.request_control(ControlAction.PAUSE, wave=None, mailbox=None, requested_by=None)
    assert reader.mailbox_states() == {"alice@old": "pending"}


# -- the same history, the same answers --------------------------------------------------------


def _history(store: StateStore) -> dict[str, Any]:
    """One run of a wave with every kind of outcome, then every read a viewer makes, as plain data
    with the clocks and process ids left out (they differ between two plays)."""
    run = store.start_run("pilot", "full", 2)
    for n, source in enumerate(("zed@old", "Amy@old", "bob@old", "amy@old")):
        mailbox, folder = _folder(store, source)
        store.claim_mailbox(mailbox, run)
        refs = [MessageRef(folder, 7, str(k)) for k in range(1, 6)]
        store.record_intents(
            [Intent(r, _facts(int(r.src_key), 10 * n + 1), b"h" * 32, "INBOX", "1", run) for r in refs]
        )
        store.record_results(
            [
                Outcome(r, "copied" if int(r.src_key) <= n + 1 else "failed", r.src_key, "NO" if n else None)
                for r in refs
            ]
        )
        store.record_unsent([Unsent(MessageRef(folder, 7, "9"), _facts(9), "skipped", "too big", run)])
        store.mailbox_progress(mailbox, MailboxProgress(6, 60, n + 1, 10 * n, 4 - n, 1, None))
        store.release_mailbox(mailbox, "ok" if n == 4 else "partial", "some failed" if n else None)
    store.finish_run(run, "partial", {"seconds": 1.0})
    store.event(run, "info", "run-finished", "done")
    reads: dict[str, Any] = {
        "rows": store.mailbox_rows(MailboxQuery()),
        "by_progress": store.mailbox_rows(MailboxQuery(order="progress")),
        "by_failed": store.mailbox_rows(MailboxQuery(order="failed")),
        "amy": store.mailbox_rows(MailboxQuery(text="amy")),
        "attention": store.count_mailboxes(MailboxQuery(attention=True)),
        "totals": store.wave_state_totals(),
        "ledger": store.ledger_progress(["zed@old", "Amy@old", "bob@old", "amy@old"]),
        "counts": store.mailbox_ledger_counts("pilot"),
        "not_copied": store.not_copied("pilot"),
        "detail": store.mailbox_detail("bob@old"),
        "copied": store.copied_totals("pilot"),
        "runs": store.recent_runs(),
        "events": store.recent_events(10),
    }
    return _plain(reads)


_CLOCKS = {"updated", "started", "ended", "ts", "at", "pid", "host", "id", "heartbeat"}


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in dataclasses.asdict(value).items() if k not in _CLOCKS}
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if k not in _CLOCKS}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def test_the_same_history_reads_the_same_on_both_backends(
    tmp_path: Path, postgres_server: PostgresServer
) -> None:
    on_sqlite = _history(StateStore(SqliteBackend(tmp_path / "state.db")))
    on_postgres = _history(StateStore(PostgresBackend(postgres_server.url(postgres_server.database()),
                                                      postgres_server.password)))  # fmt: skip
    for key in on_sqlite:
        assert on_postgres[key] == on_sqlite[key], key
        # Types too: an int is an int (PostgreSQL's SUM is NUMERIC), a float a float.
        assert repr(on_postgres[key]) == repr(on_sqlite[key]), key


# -- the routing proxy's side (#14) ----------------------------------------------------------------


def test_the_proxy_journal_sessions_captured_passwords_and_login_queue(store: StateStore) -> None:
    from runners.state.proxy_rows import (
        LoginRow,
        ProxyBatch,
        QueuedLogin,
        SealedCredential,
        SessionCount,
        SessionCounts,
    )

    now = time.time()
    logins = [
        LoginRow(now - 2, "imap", "127.0.0.9", "alice", "alice", "legacy", "alice", "store", "wave pilot", "accepted"),
        LoginRow(now - 1, "pop3", "127.0.0.9", "alice", "alice", "legacy", "alice", "store", "", "rejected",
                 "-ERR [AUTH] Authentication failed."),
        # Typed otherwise than the user's name: found by either (the typed login's index is partial).
        LoginRow(now - 3, "imap", "127.0.0.9", "Bob@Example.org", "bob", "target", "bob@tenant.example",
                 "directory", "mailHost", "accepted"),
    ]  # fmt: skip
    sealed = SealedCredential(
        "alice", "legacy", "alice", "k1", b"\x00nonce\xff", b"\x01cipher\x00text", now, now + 3600
    )
    store.record_proxy_batch(ProxyBatch(
        logins=logins, credentials=[sealed],
        queued=[QueuedLogin("pilot", "alice", now, "imap", "127.0.0.9")],
        sessions=SessionCounts("proxy-1", now, (SessionCount("legacy", "imap", 3),)),
    ))  # fmt: skip
    store.record_proxy_batch(ProxyBatch(queued=[QueuedLogin("pilot", "alice", now + 1, "pop3", "127.0.0.9")]))

    assert [(r.service, r.outcome, r.detail) for r in store.proxy_logins("alice")] == [
        ("pop3", "rejected", "-ERR [AUTH] Authentication failed."),  # the newest first
        ("imap", "accepted", ""),
    ]
    assert [r.login for r in store.proxy_logins("bob")] == ["Bob@Example.org"]
    assert [r.user for r in store.proxy_logins("Bob@Example.org")] == ["bob"]
    assert [r.detail for r in store.proxy_failures(since=now - 10)] == ["-ERR [AUTH] Authentication failed."]
    counters = {(c.backend, c.service, c.outcome): c.count for c in store.proxy_login_counters(now - 10)}
    assert counters == {
        ("legacy", "imap", "accepted"): 1, ("legacy", "pop3", "rejected"): 1, ("target", "imap", "accepted"): 1
    }  # fmt: skip
    assert [(s.backend, s.service, s.sessions) for s in store.proxy_sessions(now)] == [("legacy", "imap", 3)]
    got = store.captured_credential("alice", "legacy", now)
    assert got is not None and (got.nonce, got.ciphertext) == (
        sealed.nonce,
        sealed.ciphertext,
    )  # bytes kept exactly
    assert store.captured_credential("alice", "legacy", now + 7200) is None  # expired
    assert store.queued_by_login() == {"pilot": {"alice"}}  # queued once
    assert store.forget_captured("alice") == 1
    assert store.captured_credential("alice", "legacy", now) is None


def test_the_proxy_journal_is_cut_per_user_by_age_and_in_total(store: StateStore) -> None:
    from runners.state.proxy_rows import JournalLimits, LoginRow, ProxyBatch

    now = time.time()

    def login(user: str, ts: float) -> LoginRow:
        return LoginRow(ts, "imap", "127.0.0.9", user, user, "legacy", user, "store", "", "accepted")

    limits = JournalLimits(per_user=3, max_age_days=1.0, total=8)
    store.record_proxy_batch(ProxyBatch([login("alice", now + i) for i in range(5)]), limits)
    store.record_proxy_batch(ProxyBatch([login("bob", now - 2 * 86400)]), limits)
    assert [r.ts for r in store.proxy_logins("alice")] == [now + 4, now + 3, now + 2]  # the newest kept
    store.record_proxy_batch(ProxyBatch([login(f"probe{i}", now + 10 + i) for i in range(5)]), limits)
    # bob's, too old, and the oldest id beyond the last 8 ids (the total counts ids, not rows)
    assert store.prune_proxy_journal(limits, now=now) == 2
    assert store.proxy_logins("bob") == [] and [r.ts for r in store.proxy_logins("alice")] == [
        now + 4,
        now + 3,
    ]


def test_both_schemas_have_the_same_tables_and_columns(backend_factory: BackendFactory) -> None:
    store = StateStore(backend_factory())
    try:
        tables = ("runs", "mailboxes", "folders", "messages", "events", "wave_steps", "run_mailboxes",
                  "fleet_hosts", "server_slots", "proxy_logins", "proxy_sessions", "captured_credentials",
                  "login_queue")  # fmt: skip
        columns = {t: sorted(store._backend.columns(t)) for t in tables}
    finally:
        store.close()
    sqlite = StateStore(SqliteBackend(Path(tempfile.mkdtemp()) / "reference.db"))
    try:
        assert columns == {t: sorted(sqlite._backend.columns(t)) for t in tables}
    finally:
        sqlite.close()


def test_sqlite_writers_share_one_connection_and_it_outlives_a_stuck_transaction(tmp_path: Path) -> None:
    """Every write transaction of a process goes through one SQLite connection (its page cache kept
    from one to the next); should a failed ROLLBACK leave it inside a transaction, the next writer
    ends that one instead of failing, as would every writer after it."""
    import threading

    backend = SqliteBackend(tmp_path / "state.db")
    store = StateStore(backend)
    try:
        used: list[object] = []

        def write(source: str) -> None:
            store.upsert_mailbox(source, source, "pilot")
            with backend.transaction() as db:
                used.append(db)

        threads = [threading.Thread(target=write, args=(f"user{n}@old",)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert len(set(map(id, used))) == 1
        stuck = used[0]
        stuck.execute("BEGIN")  # what a ROLLBACK that failed would leave behind
        store.upsert_mailbox("after@old", "after@new", "pilot")
        assert {m for (m,) in backend.read("SELECT source FROM mailboxes")} >= {"user0@old", "after@old"}
    finally:
        store.close()
