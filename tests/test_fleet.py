"""A fleet of runners on one state store (#13): mailboxes claimed under leases, taken over when a
runner dies or freezes, and every ledger write fenced with the lease's token.

Runner processes stand for hosts. The targets are checked by the independent verifier of the tests
(``assert_same_mailbox``: every folder's multiset of bodies, flags and dates, read over IMAP).
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import datetime
from pathlib import Path

import pytest
from dovecot_lab import CUTOVER, Lab, assert_same_mailbox, make_lab
from fleet_lab import WAIT_SECONDS, Fleet, fill, fleet_of, freeze_between_transactions, users, wait_for
from gate import Gate
from servers import imapfill
from servers.dovecot import DovecotServer
from servers.postgres import PASSWORD_ENV, PostgresServer

from runners.model import FolderState
from runners.state.errors import LeaseLost
from runners.state.fence import Lease
from runners.state.open_store import open_store
from runners.state.pg_backend import PostgresBackend
from runners.state.store import StateStore

BACKENDS = ("sqlite", "postgresql")
PG_STATE = '[state]\nurl = "{url}"\npassword = "env:' + PASSWORD_ENV + '"\n'
MAILBOXES = 32
PER_MAILBOX = 45
#: A short lease, so takeovers come quickly; long enough that a loaded machine's heartbeats keep up
#: (a late one only makes a runner give a mailbox up early, which is safe, but slow).
FLEET_PLAN = "[run]\nbatch_messages = 5\nworkers = 2\n\n[runner]\nlease_seconds = 6\n"


@pytest.fixture(params=BACKENDS)
def fleet_lab(request: pytest.FixtureRequest, tmp_path: Path, dovecot_factory: object) -> tuple[Lab, int]:
    """32 mailboxes on real Dovecots, and a plan whose store is SQLite or a private PostgreSQL."""
    state = ""
    if request.param == "postgresql":
        state = PG_STATE.format(url=request.getfixturevalue("pg_url"))
    accounts = users(MAILBOXES)
    source = dovecot_factory(users=accounts)  # type: ignore[operator]
    target = dovecot_factory(users=accounts)  # type: ignore[operator]
    total = fill(source, sorted(accounts), PER_MAILBOX)
    mailboxes = tuple((u, u, "pilot") for u in sorted(accounts))
    lab = make_lab(tmp_path / "lab", source, target, mailboxes=mailboxes, tail=FLEET_PLAN + state)
    return lab, total


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        opened = StateStore(tmp_path / "state.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        opened = StateStore(PostgresBackend(server.url(server.database()), server.password))
    yield opened
    opened.close()


def write(store: StateStore, sql: str, params: tuple[object, ...] = ()) -> None:
    """A test's own change to the store (a clock moved on), outside its typed methods."""
    with store.backend.transaction() as db:
        db.execute(sql, params)


def assert_every_mailbox_copied_once(lab: Lab) -> None:
    for n in range(MAILBOXES):
        assert_same_mailbox(lab.source, lab.target, f"u{n:02d}")


def test_four_runners_kill_and_freeze_nothing_lost_nothing_duplicated(
    fleet_lab: tuple[Lab, int], gate: Gate
) -> None:
    lab, total = fleet_lab
    with fleet_of(lab) as fleet:
        for name in ("r1", "r3", "r4"):
            fleet.start_runner(name)
        # r2 holds its 3rd batch at the gate with the batch's intents in the ledger and nothing sent:
        # the worst moment to freeze (it would send that batch when it wakes).
        frozen = fleet.start_runner("r2", "--workers", "1", env=gate.env("hold-before-append:3"))
        launcher = fleet.launch("pilot", "--workers", "1")

        victim = wait_for("r1 copying a mailbox", lambda: fleet.copying("r1"), (launcher,))
        fleet.runners["r1"].kill()  # kill -9 mid-mailbox
        fleet.runners["r1"].wait()

        gate.wait_held()
        held = fleet.held_by("r2")
        assert len(held) == 1, held
        freeze_between_transactions(frozen, None if fleet.plan.state_server else fleet.plan.state_db)
        gate.open()  # the frozen thread goes on only when r2 is continued
        took_over = wait_for(
            f"another runner taking {held[0]} over from the frozen r2",
            lambda: [r for r in fleet.query("SELECT owner, state FROM mailboxes WHERE source = ?", held)
                     if r["owner"] not in (None, "r2") or r["state"] != "running"],
        )  # fmt: skip
        assert took_over

        out, err = launcher.communicate(timeout=WAIT_SECONDS)
        assert launcher.returncode == 0, err
        assert json.loads(out)["status"] == "ok"
        status = json.loads(lab.cutover("status", "--plan", str(lab.plan), "--output", "json").stdout)
        after_run = time.time()
        os.kill(frozen.pid, signal.SIGCONT)
        wait_for("r2 to notice its lease is gone", lambda: "lease lost" in _log(fleet.plan.state_dir, "r2"))
        results = fleet.stop_all()

    hosts = {h["name"]: h for h in status["hosts"]}
    assert hosts["r1"]["state"] == "gone" and hosts["r3"]["state"] in ("idle", "working"), hosts
    for name in ("r2", "r3", "r4"):
        assert results[name].returncode == 0, results[name].stderr
    assert fleet.runners["r1"].returncode == -signal.SIGKILL
    # r2 wrote nothing more about the mailbox it lost: no ledger row, no progress, no event since.
    assert not fleet.query(
        "SELECT m.src_key FROM messages m JOIN folders f ON f.id = m.folder_id JOIN mailboxes mb ON "
        "mb.id = f.mailbox_id WHERE mb.source = ? AND m.updated > ?",
        (held[0], after_run),
    )
    assert fleet.query("SELECT updated FROM mailboxes WHERE source = ?", held)[0]["updated"] <= after_run
    assert not fleet.query("SELECT id FROM events WHERE mailbox = ? AND ts > ?", (held[0], after_run))
    assert victim  # r1 died mid-mailbox: someone resumed it from the ledger
    states = fleet.query("SELECT state, owner FROM mailboxes")
    assert {(r["state"], r["owner"]) for r in states} == {("ok", None)}
    try:
        assert_every_mailbox_copied_once(lab)
    except AssertionError as exc:  # say who held what: the runners' logs
        logs = "\n".join(p.read_text()[-3000:] for p in (fleet.plan.state_dir / "logs").glob("*.log"))
        raise AssertionError(f"{exc}\n{logs}") from None
    code, report = lab.verify("pilot")
    assert code == 0, report
    assert report["totals"]["ok"] == total


def test_a_write_with_an_outdated_token_is_refused_in_its_transaction(store: StateStore) -> None:
    run_id = store.start_run("pilot", "full", 1)
    mailbox_id = store.upsert_mailbox("alice", "alice", "pilot")
    store.enqueue_run(run_id, [(mailbox_id, False)])
    first = store.claim_next(run_id, "host-a", 60.0)
    assert first is not None and store.claim_next(run_id, "host-b", 60.0) is None  # held, not expired
    fenced = store.fenced(first)
    fenced.set_mailbox_state(mailbox_id, "running")  # the holder writes

    # host-a falls silent past its lease: host-b takes the mailbox, with a new token.
    write(store, "UPDATE mailboxes SET heartbeat = heartbeat - 61 WHERE id = ?", (mailbox_id,))
    second = store.claim_next(run_id, "host-b", 60.0)
    assert second is not None and second.token == first.token + 1

    folder = store.fenced(second).folder(mailbox_id, "INBOX", "INBOX", "INBOX", None)
    with pytest.raises(LeaseLost):
        fenced.folder_done(folder.id, _state())
    with pytest.raises(LeaseLost):
        fenced.release_leased(run_id, "ok")
    assert first.lost
    row = store.query("SELECT owner, state FROM mailboxes WHERE id = ?", (mailbox_id,))[0]
    assert (row["owner"], row["state"]) == ("host-b", "running")
    assert store.query("SELECT uidvalidity FROM folders WHERE id = ?", (folder.id,))[0]["uidvalidity"] is None
    assert store.renew_leases([first, second]) == [first]


def test_a_lease_not_renewed_in_time_stops_sends_before_anyone_can_take_it() -> None:
    lease = Lease(1, "alice", 1, "host-a", seconds=10.0, renewed=time.monotonic() - 4.0)
    lease.check()  # 40 % of the lease: still surely held
    lease.renewed = time.monotonic() - 5.5
    with pytest.raises(LeaseLost):
        lease.check()


def test_server_slots_in_the_store_cap_connections_across_hosts(store: StateStore) -> None:
    from runners.engine.store_slots import StoreSlots

    here, there = StoreSlots(store, "host-a", 60.0), StoreSlots(store, "host-b", 60.0)
    assert here.semaphore("imap:1", 2).acquire(timeout=0)
    assert there.semaphore("imap:1", 2).acquire(timeout=0)
    assert not there.semaphore("imap:1", 2).acquire(timeout=0)  # the cap is the servers', not a host's
    here.semaphore("imap:1", 2).release()
    assert there.semaphore("imap:1", 2).acquire(timeout=0)
    assert store.slots_held("imap:1") == 2
    # A holder that stops renewing loses its slots after the lease.
    write(store, "UPDATE server_slots SET expires = expires - 120 WHERE holder = 'host-b'")
    assert here.semaphore("imap:1", 2).acquire(timeout=0)


def _state() -> FolderState:
    return FolderState(1, 2, 1, None)


def _log(state_dir: Path, name: str) -> str:
    path = state_dir / "logs" / f"runner-{name}.log"
    return path.read_text() if path.exists() else ""


def pair_lab(tmp_path: Path, source: DovecotServer, target: DovecotServer) -> tuple[Lab, int]:
    """alice and bob, 40 messages each, in wave pilot on SQLite: the lab of the one-host fleet tests."""
    total = fill(source, ["alice", "bob"], 40)
    pair = (("alice", "alice", "pilot"), ("bob", "bob", "pilot"))
    return make_lab(tmp_path / "lab", source, target, mailboxes=pair, tail=FLEET_PLAN), total


def launch_held(fleet: Fleet, gate: Gate) -> subprocess.Popen[str]:
    """``cutover run`` of the pilot with one worker, held once its first batch is recorded (one
    mailbox taken, mid-copy; the other still open)."""
    launcher = fleet.launch("pilot", "--workers", "1", env=gate.env("hold-after-record:1"))
    gate.wait_held(launcher)
    return launcher


def assert_pair_copied(lab: Lab, total: int) -> None:
    for user in ("alice", "bob"):
        assert_same_mailbox(lab.source, lab.target, user)
    code, report = lab.verify("pilot")
    assert code == 0 and report["totals"]["ok"] == total, report


def test_sigterm_finishes_the_batch_gives_the_mailbox_back_and_exits_0(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, gate: Gate
) -> None:
    lab, total = pair_lab(tmp_path, source_dovecot, target_dovecot)
    with fleet_of(lab) as fleet:
        # The launcher holds after its first batch, so the runner surely takes the other mailbox.
        launcher = launch_held(fleet, gate)
        runner = fleet.start_runner("w", "--workers", "1", env=gate.env("hold-after-record:1"))
        gate.wait_held(runner)
        (held,) = fleet.held_by("w")
        runner.send_signal(signal.SIGTERM)
        gate.open()
        out, err = runner.communicate(timeout=WAIT_SECONDS)
        assert runner.returncode == 0, err
        assert "stopping after the current batch" in err
        # Given back where it stopped: nobody holds it, pending, its copied part in the ledger.
        row = fleet.query("SELECT owner, state, messages_done FROM mailboxes WHERE source = ?", (held,))[0]
        assert json.loads(out)["mailboxes"] == 1
        hosts = {h["name"]: h for h in json.loads(lab.cutover("status", "--plan", str(lab.plan), "--output",
                                                               "json").stdout)["hosts"]}  # fmt: skip
        assert hosts["w"]["state"] == "stopped" and hosts["w"]["mailboxes"] == []
        launched_out, launched_err = launcher.communicate(timeout=WAIT_SECONDS)  # it finishes the rest
    assert row["owner"] in (None, f"{socket.gethostname()}:{launcher.pid}") and row["messages_done"] > 0, row
    assert launcher.returncode == 0, launched_err
    assert json.loads(launched_out)["status"] == "ok"
    assert_pair_copied(lab, total)


#: A message taken off the target: its folder, body, flags and arrival date.
Taken = tuple[str, bytes, tuple[str, ...], datetime]


def take_back(target: DovecotServer, user: str) -> list[Taken]:
    """Every message of ``user`` on the target, removed from it (folder, body, flags, date): what a
    server holds of a dead client's last batch before it has finished saving it."""
    held = {
        folder: messages
        for folder, messages in imapfill.folder_snapshot(target, user, master=True).items()
        if messages
    }
    with imapfill.connect(target, user, master=True) as client:
        for folder in held:
            client.select_folder(folder)
            client.add_flags(client.search("ALL"), ["\\Deleted"])
            client.expunge()
    return [
        (folder, body, tuple(sorted(flags)), date)
        for folder, messages in held.items()
        for body, flags, date in messages
    ]


def save_late(target: DovecotServer, user: str, taken: list[Taken]) -> None:
    with imapfill.connect(target, user, master=True) as client:
        for folder, body, flags, date in taken:
            client.append(folder, body, flags=flags, msg_time=date)


def test_a_killed_runners_batch_saved_late_is_found_by_the_runner_that_takes_over_in_the_same_run(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, gate: Gate
) -> None:
    lab, total = pair_lab(tmp_path, source_dovecot, target_dovecot)
    with fleet_of(lab) as fleet:
        launcher = launch_held(fleet, gate)  # the run stays this one: its launcher lives on
        doomed = fleet.start_runner("doomed", "--workers", "1", env=gate.env("hold-after-append:1"))
        gate.wait_held(doomed)  # its first batch sent and answered; the ledger says pending
        (user,) = fleet.held_by("doomed")
        taken = take_back(target_dovecot, user)  # as if the server had not saved it yet
        assert taken
        doomed.kill()
        doomed.wait()
        heir = fleet.start_runner("heir", "--workers", "1", env=gate.env("hold-before-recovery:1"))
        assert gate.wait_held(heir) == "before-recovery"
        assert fleet.held_by("heir") == [user]  # taken over at once: its holder's process is gone
        gate.open()
        time.sleep(0.3)  # the server, slow under load, saves the dead runner's batch as the heir looks
        save_late(target_dovecot, user, taken)
        wait_for("the run to end", fleet.run_done, (launcher, heir))
        done = fleet.stop_all()["heir"]
        assert done.returncode == 0, done.stderr
        launcher.communicate(timeout=WAIT_SECONDS)
        events = [r["message"] for r in fleet.query("SELECT message FROM events WHERE kind = 'reconciled'")]
    # Without the wait, the heir called the batch lost and copied it again: each message twice.
    assert_pair_copied(lab, total)
    # One line per folder the dead runner had a batch in flight in (here its first folder's only).
    settled = [
        re.fullmatch(r"interrupted APPENDs: (\d+) found on the target, 0 to copy again", e) for e in events
    ]
    assert all(settled) and sum(int(m.group(1)) for m in settled if m) == len(taken), events


def test_a_runner_joining_late_obeys_a_pause_made_before_it_joined(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, gate: Gate
) -> None:
    lab, total = pair_lab(tmp_path, source_dovecot, target_dovecot)
    with fleet_of(lab) as fleet:
        launcher = launch_held(fleet, gate)  # one mailbox taken by the launcher; the other still open
        (open_one,) = [r["source"] for r in fleet.query("SELECT source FROM mailboxes WHERE owner IS NULL")]
        paused = lab.cutover("control", "--plan", str(lab.plan), "pause", "--mailbox", open_one)
        assert paused.returncode == 0, paused.stderr
        fleet.start_runner("w", "--workers", "1")
        # The runner takes the open mailbox and pauses it at its first checkpoint, as the launcher would.
        row = wait_for(
            f"runner w holding {open_one} paused",
            lambda: next(iter(fleet.query(
                "SELECT state, messages_done FROM mailboxes WHERE source = ? AND owner = 'w' AND state = 'paused'",
                (open_one,))), None),
            (launcher,),
        )  # fmt: skip
        assert row["messages_done"] <= 5, row  # at most the batch before its first checkpoint
        resumed = lab.cutover("control", "--plan", str(lab.plan), "resume", "--mailbox", open_one)
        assert resumed.returncode == 0, resumed.stderr
        gate.open()
        out, err = launcher.communicate(timeout=WAIT_SECONDS)
        assert launcher.returncode == 0, err
        assert json.loads(out)["status"] == "ok"
    assert_pair_copied(lab, total)


ELSEWHERE = "elsewhere.example"


def orphan_run(
    store: StateStore, *, silent_for: float, state: str = "working", open_left: int = 0, pid: int = 4242
) -> int:
    """A run launched by ``elsewhere.example:<pid>`` (a process of another host, which can't be asked
    whether it lives), whose heartbeat in ``fleet_hosts`` is ``silent_for`` seconds old; two mailboxes
    queued, ``open_left`` of them not finished."""
    run_id = store.start_run("pilot", "full", 2)
    ids = store.upsert_mailboxes([("alice", "alice", "pilot"), ("bob", "bob", "pilot")])
    store.enqueue_run(run_id, [(i, False) for i in ids])
    for mailbox_id in ids[open_left:]:
        write(
            store,
            "UPDATE run_mailboxes SET done = 1 WHERE run_id = ? AND mailbox_id = ?",
            (run_id, mailbox_id),
        )
    write(store, "UPDATE runs SET host = ?, pid = ? WHERE id = ?", (ELSEWHERE, pid, run_id))
    now = time.time()
    write(store, "INSERT INTO fleet_hosts (name, host, pid, started, heartbeat, state) VALUES (?,?,?,?,?,?)",
          (f"{ELSEWHERE}:{pid}", ELSEWHERE, pid, now - 3600, now - silent_for, state))  # fmt: skip
    return run_id


def test_a_run_whose_launcher_on_another_host_is_gone_ends_interrupted_once_its_mailboxes_are_done(
    store: StateStore,
) -> None:
    run_id = orphan_run(store, silent_for=30.0, open_left=1)
    # The fleet is still finishing it: it stays running, so runners keep taking its mailboxes.
    assert store.close_orphaned_runs(60.0) == [] and store.close_orphaned_runs(10.0) == []
    assert run_id in store.runs_with_open_work()
    write(store, "UPDATE run_mailboxes SET done = 1 WHERE run_id = ?", (run_id,))
    assert store.close_orphaned_runs(60.0) == []  # its launcher beat within the lease: it writes its end
    assert store.close_orphaned_runs(10.0) == [run_id]
    row = store.run(run_id)
    assert row is not None and row.status == "interrupted"
    assert store.close_orphaned_runs(10.0) == []  # once


def test_a_launcher_that_stopped_without_ending_its_run_leaves_it_interrupted(store: StateStore) -> None:
    stopped = orphan_run(store, silent_for=0.0, state="stopped", pid=4242)
    ended = orphan_run(store, silent_for=600.0, pid=4243)
    store.finish_run(ended, "ok", {})
    assert store.close_orphaned_runs(60.0) == [stopped]  # a finished run keeps its status
    finished = store.run(ended)
    assert finished is not None and finished.status == "ok"


def test_the_fleet_finishes_a_run_whose_launcher_host_died_and_records_it_interrupted(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, gate: Gate
) -> None:
    lab, total = pair_lab(tmp_path, source_dovecot, target_dovecot)
    with fleet_of(lab) as fleet:
        launcher = launch_held(fleet, gate)  # mid-mailbox: one batch of it recorded
        launcher.send_signal(signal.SIGSTOP)
        # The launcher stands for another host's process: nobody here can see that it died.
        here = f"{socket.gethostname()}:{launcher.pid}"
        there = f"{ELSEWHERE}:{launcher.pid}"
        with closing(open_store(fleet.plan)) as store:
            write(store, "UPDATE runs SET host = ? WHERE pid = ?", (ELSEWHERE, launcher.pid))
            write(store, "UPDATE fleet_hosts SET name = ?, host = ? WHERE name = ?", (there, ELSEWHERE, here))
            write(store, "UPDATE mailboxes SET owner = ? WHERE owner = ?", (there, here))
        launcher.kill()
        launcher.wait()
        runner = fleet.start_runner("w", "--workers", "1")
        # The runner copies the open mailbox, takes the dead launcher's over when its lease ran out,
        # and, every mailbox finished, ends the run that nobody else would end.
        status = wait_for(
            "the orphaned run to end",
            lambda: next((r["status"] for r in fleet.query("SELECT status FROM runs") if r["status"] != "running"),
                         None),
            (runner,),
        )  # fmt: skip
        assert status == "interrupted"
        done = fleet.stop_all()["w"]
        assert done.returncode == 0, done.stderr
        assert (
            "launcher is gone and every mailbox of it is finished"
            in _log(fleet.plan.state_dir, "w") + done.stderr
        )
    assert_pair_copied(lab, total)
    rerun = lab.cutover(
        "run", "--plan", str(lab.plan), "--wave", "pilot", "--output", "json", "--progress", "none"
    )
    assert rerun.returncode == 0, rerun.stderr
    assert json.loads(rerun.stdout)["totals"]["copied"] == 0  # a delta pass: nothing left to copy


def test_runner_help_and_a_bad_plan() -> None:
    shown = subprocess.run([*CUTOVER, "runner", "--help"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0 and "--name" in shown.stdout and "SIGTERM" in shown.stdout
    missing = subprocess.run([*CUTOVER, "runner", "--plan", "/nonexistent/plan.toml"], capture_output=True,
                             text=True, timeout=60)  # fmt: skip
    assert missing.returncode == 2 and "plan file not found" in missing.stderr


def test_the_lease_is_the_plans_runner_lease_seconds(tmp_path: Path) -> None:
    from dovecot_lab import Unreachable, write_plan

    from runners.errors import PlanError
    from runners.plan.loader import load_plan

    side = Unreachable(1)
    assert load_plan(write_plan(tmp_path / "a", side, side)).lease_seconds == 120.0
    assert (
        load_plan(write_plan(tmp_path / "b", side, side, tail="[runner]\nlease_seconds = 45\n")).lease_seconds
        == 45
    )
    with pytest.raises(PlanError, match=r"plan.toml:\d+: \[runner.lease_seconds\] must be at least 1 second"):
        load_plan(write_plan(tmp_path / "c", side, side, tail="[runner]\nlease_seconds = 0.5\n"))
    with pytest.raises(PlanError, match=r"unknown key \"lease\""):
        load_plan(write_plan(tmp_path / "d", side, side, tail="[runner]\nlease = 5\n"))
