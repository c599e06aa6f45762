"""An APPEND cut short by ``keep_sending`` (the engine's lease check) lands nothing, on a real Dovecot.

A runner frozen in mid-APPEND whose mailbox another runner took over meanwhile must not finish the
APPEND when it wakes: the other runner's recovery looked, found nothing and copied the batch again.
So the lease is asked right before each send of an APPEND, its first included, and a refusal drops
the connection: the server discards the command it got only part of.
"""

from __future__ import annotations

import socket
import struct
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


def bytes_out(target: ImapTarget) -> int:
    """Bytes of the connection the server acknowledged (Linux ``tcp_info.tcpi_bytes_acked``: on
    loopback, everything sent so far once the kernel has it out)."""
    info = target.conn._require_sock().getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    return int(struct.unpack_from("<Q", info, 120)[0])


def inbox(server: DovecotServer) -> int:
    return len(imapfill.folder_snapshot(server, "alice", master=True).get("INBOX", []))


@pytest.mark.parametrize("sends_allowed", [0, 1, 2])
def test_an_append_stopped_at_any_of_its_sends_lands_nothing(
    target_dovecot: DovecotServer, sends_allowed: int
) -> None:
    """Stopped before its first send (a freeze between the engine's own check and the wire), or
    between its pieces: nothing lands, and the connection is gone."""
    asked: list[int] = []  # what had gone out of the connection at each ask

    target = imap_target(target_dovecot)
    before = bytes_out(target)

    def lease_gone_after_some() -> None:
        asked.append(bytes_out(target) - before)
        if len(asked) > sends_allowed:
            raise LeaseLost("alice", "another runner took the mailbox over")

    try:
        with pytest.raises(LeaseLost):
            target.append("INBOX", BATCH, lease_gone_after_some)
        assert len(asked) == sends_allowed + 1  # asked right before each send; it stopped at the refusal
        assert asked[0] == 0  # the first ask comes before a byte of the command goes out
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
    assert len(asked) >= 3  # every send asked, the first included (800 KB go out in several)
    assert inbox(target_dovecot) == len(BATCH)
