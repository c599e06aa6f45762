"""An APPEND cut short by ``keep_sending`` (the engine's lease check) lands nothing, on a real Dovecot.

A runner frozen in mid-APPEND whose mailbox another runner took over meanwhile must not finish the
APPEND when it wakes: the other runner's recovery looked, found nothing and copied the batch again.
So the lease is asked between the pieces of one APPEND, and a refusal drops the connection: the
server discards the command it got only part of.
"""

from __future__ import annotations

import time

import pytest
from corpus import message
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.imap_target import ImapTarget
from runners.errors import ConnectionLost
from runners.imap.wire import ImapConnection
from runners.model import AppendItem
from runners.state.errors import LeaseLost

#: Four messages of 200 KB: the MULTIAPPEND goes out in several sends (256 KB each).
BATCH = [AppendItem(message(f"large {n}", "x" * 200_000), ("\\Seen",), None, "") for n in range(4)]


def imap_target(server: DovecotServer) -> ImapTarget:
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=30)
    conn.connect()
    conn.authenticate_plain(server.master_user, server.master_password, authzid="alice")
    return ImapTarget(conn)


def inbox(server: DovecotServer) -> int:
    return len(imapfill.folder_snapshot(server, "alice", master=True).get("INBOX", []))


def test_an_append_stopped_between_its_pieces_lands_nothing(target_dovecot: DovecotServer) -> None:
    asked: list[int] = []

    def lease_gone() -> None:
        asked.append(1)
        raise LeaseLost("alice", "another runner took the mailbox over")

    target = imap_target(target_dovecot)
    try:
        with pytest.raises(LeaseLost):
            target.append("INBOX", BATCH, lease_gone)
        assert asked == [1]  # asked once the first piece was out, and it stopped there
        with pytest.raises(ConnectionLost):  # dropped: the half-sent command can't go on
            target.uidnext("INBOX")
    finally:
        target.close()
    time.sleep(0.5)  # what a server would save late, it saves in this time
    assert inbox(target_dovecot) == 0


def test_an_append_the_check_lets_through_lands_whole(target_dovecot: DovecotServer) -> None:
    asked: list[int] = []
    target = imap_target(target_dovecot)
    try:
        outcomes = target.append("INBOX", BATCH, lambda: asked.append(1))
    finally:
        target.close()
    assert [o.error for o in outcomes] == [None] * len(BATCH)
    assert len(asked) >= 2  # every send after the first asked
    assert inbox(target_dovecot) == len(BATCH)
