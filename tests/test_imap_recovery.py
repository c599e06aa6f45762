"""Crash recovery on an IMAP target (runners/connectors/imap_recovery.py), on a real Dovecot: a
crashed run's APPEND that the server saves only after the next run began looking for it is found,
not copied again."""

from __future__ import annotations

import hashlib
import threading
import time

from corpus import message
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors import quiet
from runners.connectors.base import Uncertain
from runners.connectors.imap_target import ImapTarget
from runners.imap.wire import ImapConnection


def imap_target(server: DovecotServer) -> ImapTarget:
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=30)
    conn.connect()
    conn.authenticate_plain(server.master_user, server.master_password, authzid="alice")
    return ImapTarget(conn)


def uncertain(bodies: list[bytes], mark: int) -> list[Uncertain]:
    return [Uncertain(1, str(n), hashlib.sha256(b).digest(), str(mark), "") for n, b in enumerate(bodies)]


def test_an_append_saved_after_the_recovery_began_is_found_not_lost(target_dovecot: DovecotServer) -> None:
    imapfill.append(target_dovecot, "alice", "INBOX", message("already there"))
    target = imap_target(target_dovecot)
    try:
        floor = target.uidnext("INBOX")
        # Two of them byte for byte the same: each intent takes its own copy.
        bodies = [message("late 1"), message("late 2"), message("late 2")]
        saved = threading.Event()

        def the_dead_clients_last_append() -> None:
            time.sleep(0.5)  # the server is still saving what the crashed run sent
            for body in bodies:
                imapfill.append(target_dovecot, "alice", "INBOX", body)
            saved.set()

        late = threading.Thread(target=the_dead_clients_last_append)
        late.start()
        found = target.recovery.find("INBOX", uncertain(bodies, floor), claimed=set(), after_crash=True)
        late.join()
        assert saved.is_set()
        assert None not in found and len(set(found)) == 3, found
        assert all(int(uid) >= floor for uid in found if uid is not None)
    finally:
        target.close()


def test_an_append_that_never_came_is_lost_once_the_folder_is_quiet(target_dovecot: DovecotServer) -> None:
    imapfill.append(target_dovecot, "alice", "INBOX", message("already there"))
    target = imap_target(target_dovecot)
    try:
        floor = target.uidnext("INBOX")
        lost = uncertain([message("never sent")], floor)
        started = time.monotonic()
        assert target.recovery.find("INBOX", lost, claimed=set(), after_crash=True) == [None]
        # It waited for the folder to stay still, not more (nothing was being saved).
        assert quiet.QUIET_SECONDS <= time.monotonic() - started < quiet.SETTLE_SECONDS
        # The caller's own intents (a connection of its own lost mid-pass): no wait.
        started = time.monotonic()
        assert target.recovery.find("INBOX", lost, claimed=set()) == [None]
        assert time.monotonic() - started < quiet.QUIET_SECONDS
    finally:
        target.close()
