"""One mailbox over several connections on each side (runners/engine/lanes.py): the folder's
messages to copy are cut by UID and copied at once, under the servers' caps, with the ledger's
guarantees unchanged (every message once, kill -9 then rerun ends as an uninterrupted run)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import pytest
from corpus import message
from dovecot_lab import append_many, assert_same_mailbox, make_lab, run_killed
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.engine.lanes import MESSAGE_WEIGHT_BYTES, UNIT_MESSAGES, unit_floor, units
from runners.model import MessageMeta

INBOX, ARCHIVE = 1400, 600
TOTAL = INBOX + ARCHIVE


def bodies(count: int, tag: str) -> list[bytes]:
    # Every fifth message repeats the one before: duplicates are distinct messages, on any lane.
    out: list[bytes] = []
    for n in range(count):
        out.append(
            out[-1] if n % 5 == 4 else message(f"{tag} {n}", f"lane test {n}\n" + "y" * (200 + 31 * n % 4000))
        )
    return out


@pytest.fixture
def filled(source_dovecot: DovecotServer) -> DovecotServer:
    imapfill.create_folder(source_dovecot, "alice", "Archive")
    append_many(source_dovecot, "alice", "INBOX", bodies(INBOX, "in"), flags=("\\Seen",))
    append_many(source_dovecot, "alice", "Archive", bodies(ARCHIVE, "ar"))
    return source_dovecot


def most_at_once(server: DovecotServer, user: str = "alice") -> tuple[int, int]:
    """(sessions of ``user`` logged in over the server's life, the most open at one moment), from
    Dovecot's own log: each login and each disconnect names its session."""
    assert server.root is not None
    log = (server.root / "dovecot.log").read_text()
    login = re.compile(rf"imap-login: Info: Login: user=<{user}>.*session=<([^>]+)>")
    gone = re.compile(rf"imap\({user}\)<\d+><([^>]+)>: Info: Disconnected")
    open_now: set[str] = set()
    total = peak = 0
    for line in log.splitlines():
        if (m := login.search(line)) is not None:
            open_now.add(m.group(1))
            total += 1
            peak = max(peak, len(open_now))
        elif (m := gone.search(line)) is not None:
            open_now.discard(m.group(1))
    return total, peak


def test_one_mailbox_is_copied_over_several_connections_within_the_caps(
    tmp_path: Path, filled: DovecotServer, target_dovecot: DovecotServer
) -> None:
    # A worker alone may use the connections of the idle ones; the target allows 3 at once.
    lab = make_lab(tmp_path / "lab", filled, target_dovecot, target_extra="max_connections = 3")

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == TOTAL
    assert_same_mailbox(lab.source, lab.target)
    logins, peak = most_at_once(target_dovecot)
    assert peak == 3, (logins, peak)  # more than one at once, never more than the cap
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report
    assert report["totals"]["ok"] == TOTAL


def test_one_connection_per_side_when_the_plan_says_so(
    tmp_path: Path, filled: DovecotServer, target_dovecot: DovecotServer
) -> None:
    tail = "[run]\nconnections_per_mailbox = 1\n"
    lab = make_lab(tmp_path / "lab", filled, target_dovecot, tail=tail)
    code, summary = lab.run()
    assert code == 0, summary
    assert most_at_once(target_dovecot)[1] == 1
    assert_same_mailbox(lab.source, lab.target)


def test_killed_at_random_moments_with_several_connections_then_rerun(
    tmp_path: Path, filled: DovecotServer, target_dovecot: DovecotServer
) -> None:
    # Four connections a side, small batches: a kill lands while several APPENDs are in flight on
    # different connections, each with its own UIDNEXT floor. The rerun settles them all.
    tail = "[run]\nbatch_messages = 20\nconnections_per_mailbox = 4\n"
    lab = make_lab(tmp_path / "lab", filled, target_dovecot, tail=tail)
    rng = random.Random(20261206)
    for _ in range(5):
        point = rng.choice(("before-append", "after-append", "after-record"))
        run_killed(lab, f"{point}:{rng.randint(3, 12)}")

    code, summary = lab.run()

    assert code == 0, summary
    assert_same_mailbox(lab.source, lab.target)
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report
    assert report["totals"]["ok"] == TOTAL
    code, summary = lab.run()  # and nothing more to do
    assert code == 0 and summary["totals"]["copied"] == 0, summary


def test_a_target_refusal_on_one_connection_stops_the_mailbox_with_everything_recorded(
    tmp_path: Path, dovecot_factory: object
) -> None:
    # A quota the mailbox reaches mid-folder: whichever connection meets it, the mailbox stops with
    # the target's words, what was accepted is in the ledger, and nothing is copied twice later.
    source: DovecotServer = dovecot_factory()  # type: ignore[operator]
    target: DovecotServer = dovecot_factory(quota_storage="3M")  # type: ignore[operator]
    append_many(source, "alice", "INBOX", bodies(INBOX, "q"))
    tail = "[run]\nbatch_messages = 20\nconnections_per_mailbox = 4\n"
    lab = make_lab(tmp_path / "lab", source, target, tail=tail)

    code, summary = lab.run()

    assert code == 1, summary
    (alice,) = summary["mailboxes"]
    assert alice["state"] == "failed" and "OVERQUOTA" in alice["error"], alice
    on_target = imapfill.folder_snapshot(target, "alice", master=True)["INBOX"]
    assert 0 < len(on_target) < INBOX
    assert summary["totals"]["copied"] == len(on_target)  # each accepted message is recorded
    _, report = lab.verify("pilot", "--deep")
    assert report["totals"]["ok"] == len(on_target), report  # ... once, with its own bytes


def test_a_message_the_source_hangs_up_on_is_failed_whichever_connection_carries_it(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    # Dovecot hangs up on a message it can't read. With four connections a side, the unit holding
    # it may be on any of them: it is narrowed down all the same, failed with the server's words,
    # and everything else is copied once.
    append_many(source_dovecot, "alice", "INBOX", bodies(700, "a"))
    imapfill.append(source_dovecot, "alice", "INBOX", message("soon broken", "z" * 3000))
    append_many(source_dovecot, "alice", "INBOX", bodies(700, "b"))
    maildir = source_dovecot.maildir("alice")
    files = [*(maildir / "new").iterdir(), *(maildir / "cur").iterdir()]
    (broken,) = [p for p in files if b"soon broken" in p.read_bytes()]
    broken.chmod(0)
    lab = make_lab(
        tmp_path / "lab", source_dovecot, target_dovecot, tail="[run]\nconnections_per_mailbox = 4\n"
    )

    code, summary = lab.run()

    assert code == 1, summary
    assert summary["totals"]["copied"] == 1400 and summary["totals"]["failed"] == 1, summary
    (row,) = lab.status("--failures")["not_copied"]
    assert row["uid"] == 701 and row["status"] == "failed"
    assert "closed the connection while sending this message" in row["reason"]
    # The next run tries it again (it may be readable by then) and copies nothing twice.
    broken.chmod(0o600)
    code, summary = lab.run()
    assert code == 0, summary
    assert summary["totals"]["copied"] == 1
    assert_same_mailbox(source_dovecot, target_dovecot)


def test_a_large_mailbox_takes_the_connections_the_others_give_back(
    tmp_path: Path, dovecot_factory: Any
) -> None:
    # Four workers, four mailboxes: one connection a side each at first. Three are small and end
    # at once; the large one, cut into units, copies its units left over more connections.
    users = {"big": "b", "s1": "1", "s2": "2", "s3": "3"}
    source: DovecotServer = dovecot_factory(users=users)
    target: DovecotServer = dovecot_factory(users=users)
    append_many(source, "big", "INBOX", bodies(INBOX, "big"))
    for user in ("s1", "s2", "s3"):
        append_many(source, user, "INBOX", bodies(10, user))
    mailboxes = tuple((user, user, "pilot") for user in users)
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=mailboxes, tail="[run]\nworkers = 4\n")

    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == INBOX + 30
    assert most_at_once(target, "big")[1] > 1
    for user in users:
        assert_same_mailbox(source, target, user)


def test_a_folder_is_cut_into_units_of_about_equal_weight_holding_every_message_once() -> None:
    rng = random.Random(7)
    todo = [
        MessageMeta(str(uid), uid, rng.choice((900, 4_000, 60_000, 2_000_000)), (), None)
        for uid in range(1, 1201)
    ]

    cut = units(todo, 4)

    assert [m for unit in cut for m in unit] == todo  # in UID order, each once
    assert len(cut) >= 2 * 4  # a lane that finishes early takes another unit
    assert all(len(unit) <= UNIT_MESSAGES for unit in cut)
    weights = [sum(m.size + MESSAGE_WEIGHT_BYTES for m in unit) for unit in cut]
    body, last_round = weights[:-4], weights[-4:]
    assert max(body) < 2 * min(body)  # no unit keeps its lane busy long after the others...
    assert max(last_round) < min(body)  # ...and the last ones are lighter: the folder ends together
    assert len(units(todo[:40], 4)) == 1  # too few for two units: not cut
    small = [MessageMeta(str(uid), uid, 300, (), None) for uid in range(1, 131)]
    assert unit_floor(small, 200, 8 << 20) == 200  # a unit holds a full batch: 130 fit in one request
