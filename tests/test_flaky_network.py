"""Flaky networks are not broken messages: runs through a proxy that resets and stalls connections.

The proxy (tests/servers/faultproxy.py) sits between the engine and real Dovecot servers, on both
sides. ``CUTOVER_FAULT_SEED`` replays a run with other faults (the seed is in each test's output).
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import Lab, append_many, assert_same_mailbox, rewrite_table, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer
from servers.faultproxy import FaultProxy

from runners.plan.loader import load_plan
from runners.state.read_models.snapshot import take
from runners.state.store import StateStore

SEED = int(os.environ.get("CUTOVER_FAULT_SEED", "8"))
USERS = {"alice": "a-pw", "bob": "b-pw"}


def _greeting_through(proxy: FaultProxy) -> bytes:
    """Everything a client receives through the proxy until it closes, resets or stalls (2 s)."""
    with socket.create_connection(("127.0.0.1", proxy.imap_port), timeout=2) as sock:
        received = b""
        while True:
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                return received + b"<stalled>"
            except ConnectionResetError:
                return received + b"<reset>"
            if not chunk:
                return received + b"<closed>"
            received += chunk


def test_the_proxy_resets_and_stalls_where_it_is_told_and_within_its_budget(
    source_dovecot: DovecotServer,
) -> None:
    with FaultProxy(source_dovecot.imap_port, seed=SEED, scripted={0: ("reset", "down", 8)}) as resets:
        got = _greeting_through(resets)
    assert resets.log.faults == [(0, "reset", "down", 8)] and got.endswith(b"<reset>")
    # Dovecot's greeting, cut at byte 8 (the RST may overtake the last bytes before it).
    assert b"* OK [CA".startswith(got[: -len(b"<reset>")])
    with FaultProxy(source_dovecot.imap_port, seed=SEED, scripted={0: ("stall", "down", 8)}) as stalls:
        got = _greeting_through(stalls)
    assert stalls.log.stalls == 1 and got.endswith(b"<stalled>")
    # Drawn faults: one every 10 to 20 bytes here, but no more than the budget; then it passes all.
    with FaultProxy(source_dovecot.imap_port, seed=SEED, gaps=(10, 20), max_faults=2) as drawn:
        greetings = [_greeting_through(drawn) for _ in range(3)]
    assert drawn.log.injected == 2 and [f[0] for f in drawn.log.faults] == [0, 1]
    assert [b"\r\n" in g for g in greetings] == [False, False, True]  # cut, cut, whole


@pytest.mark.parametrize("kind", ["reset", "stall"])
def test_a_message_on_the_wire_when_the_link_breaks_is_not_failed(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer, kind: str
) -> None:
    # One message of 300 kB; the first source connection breaks 150 kB into its body: alone in its
    # FETCH, it is the message "at fault" as far as the engine can see, yet the link is.
    body = message("the only one", "b" * 300_000)
    imapfill.append(source_dovecot, "alice", "INBOX", body)
    proxy = FaultProxy(source_dovecot.imap_port, seed=SEED, scripted={0: (kind, "down", 150_000)})
    plan = write_plan(tmp_path / "lab", proxy, target_dovecot, source_extra="timeout = 2")
    lab = Lab(source_dovecot, target_dovecot, tmp_path / "lab", plan)

    with proxy:
        code, summary = lab.run()

    assert proxy.log.faults == [(0, kind, "down", 150_000)]
    assert code == 0, summary
    assert summary["totals"]["copied"] == 1 and summary["totals"]["failed"] == 0
    assert summary["totals"]["reconnects"] == 1
    assert_same_mailbox(source_dovecot, target_dovecot)


def _fill(server: DovecotServer, user: str, count: int) -> None:
    bodies = [message(f"{user} {n}", f"line {n}\n" + "z" * (500 + (n * 7919) % 12_000)) for n in range(count)]
    append_many(server, user, "INBOX", bodies[: count // 2], flags=("\\Seen",))
    append_many(server, user, "Archive", bodies[count // 2 :])


def test_two_mailboxes_through_resets_and_stalls_copy_everything_in_one_run(
    tmp_path: Path, dovecot_factory: object
) -> None:
    source: DovecotServer = dovecot_factory(users=USERS)  # type: ignore[operator]
    target: DovecotServer = dovecot_factory(users=USERS)  # type: ignore[operator]
    per_mailbox = 1500
    for user in USERS:
        imapfill.create_folder(source, user, "Archive")
        _fill(source, user, per_mailbox)
    # A fault every 1.5 to 4 MB on each side (up to 10 a side), half of them stalls.
    source_proxy, target_proxy = (
        FaultProxy(
            server.imap_port,
            seed=seed,
            gaps=(1_500_000, 4_000_000),
            max_faults=10,
            master_user=server.master_user,
        )
        for server, seed in ((source, SEED), (target, SEED + 1))
    )
    mailboxes = tuple((user, user, "pilot") for user in USERS)
    # A 2-second read timeout: a stalled connection is noticed quickly.
    plan = write_plan(
        tmp_path / "lab",
        source_proxy,
        target_proxy,
        mailboxes=mailboxes,
        source_extra="timeout = 2",
        target_extra="timeout = 2",
    )
    lab = Lab(source, target, tmp_path / "lab", plan)

    started = time.monotonic()
    with source_proxy, target_proxy:
        code, summary = lab.run("pilot", "--workers", "2")
    seconds = time.monotonic() - started

    totals = summary["totals"]
    print(
        f"\nseed {SEED}: {2 * per_mailbox} messages, {source_proxy.log.resets} resets and "
        f"{source_proxy.log.stalls} stalls on the source side, {target_proxy.log.resets} resets and "
        f"{target_proxy.log.stalls} stalls on the target side, {totals['reconnects']} reconnects, "
        f"{seconds:.1f} s"
    )
    assert source_proxy.log.injected >= 1 and target_proxy.log.injected >= 1, "no fault was injected"
    assert code == 0, summary
    assert totals["failed"] == 0 and totals["skipped"] == 0
    assert totals["copied"] + totals["matched_by_content"] == 2 * per_mailbox
    assert totals["messages_total"] == 2 * per_mailbox
    assert totals["reconnects"] >= 1
    for user in USERS:
        assert_same_mailbox(source, target, user)
    # The cockpit's figures are true too: every mailbox done, nothing counted twice.
    store = StateStore(load_plan(plan).state_db)
    rows = take(store, load_plan(plan)).mailboxes
    store.close()
    assert [(r.state, r.messages_done, r.messages_total) for r in rows] == [
        ("ok", per_mailbox, per_mailbox)
    ] * 2
    # Straight to the servers now: verify --deep compares every message's bytes.
    for side, proxy, server in (("source", source_proxy, source), ("target", target_proxy, target)):
        direct = f"port = {server.imap_port}"
        rewrite_table(plan, side, lambda t, p=proxy, d=direct: t.replace(f"port = {p.imap_port}", d))  # type: ignore[misc]
    verify_code, report = lab.verify("pilot", "--deep")
    assert verify_code == 0, report
