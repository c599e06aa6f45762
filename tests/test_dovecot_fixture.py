"""The private Dovecot servers behave the way the engine tests rely on."""

from __future__ import annotations

import datetime as dt
import os
import poplib
import ssl
from collections.abc import Callable

import pytest
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError
from servers import imapfill
from servers.dovecot import DovecotError, DovecotServer

Factory = Callable[..., DovecotServer]
MESSAGE = b"From: a@example.test\r\nSubject: hello\r\n\r\nbody\r\n"


def plain_client(server: DovecotServer) -> IMAPClient:
    return IMAPClient(server.host, port=server.imap_port, ssl=False, timeout=10)


def test_master_user_logs_in_with_login_and_with_sasl_plain(source_dovecot: DovecotServer) -> None:
    imapfill.create_folder(source_dovecot, "alice", "Only-Alice")  # as alice herself

    with plain_client(source_dovecot) as client:
        client.login("alice*admin", source_dovecot.master_password)
        assert client.folder_exists("Only-Alice")

    with plain_client(source_dovecot) as client:
        client.plain_login("admin", source_dovecot.master_password, authorization_identity="alice")
        assert client.folder_exists("Only-Alice")

    with imapfill.connect(source_dovecot, "bob", master=True) as client:
        assert not client.folder_exists("Only-Alice")


def test_capabilities_the_engine_relies_on(source_dovecot: DovecotServer) -> None:
    with imapfill.connect(source_dovecot, "alice") as client:
        capabilities = set(client.capabilities())
    assert {b"UIDPLUS", b"MULTIAPPEND", b"LITERAL+", b"CONDSTORE", b"SPECIAL-USE"} <= capabilities


def test_pop3_master_login_and_uidl_format(source_dovecot: DovecotServer) -> None:
    uid = imapfill.append(source_dovecot, "alice", "INBOX", MESSAGE)
    with imapfill.connect(source_dovecot, "alice") as client:
        uidvalidity = client.folder_status("INBOX", ["UIDVALIDITY"])[b"UIDVALIDITY"]

    pop = poplib.POP3(source_dovecot.host, source_dovecot.pop3_port, timeout=10)
    try:
        pop.user("alice*admin")
        pop.pass_(source_dovecot.master_password)
        assert pop.stat() == (1, len(MESSAGE))
        listing = pop.uidl()[1]
    finally:
        pop.quit()
    # pop3_uidl_format = %08Xu%08Xv
    assert listing == [f"1 {uid:08x}{uidvalidity:08x}".encode()]


def test_add_user_while_running(source_dovecot: DovecotServer) -> None:
    source_dovecot.add_user("carol", "carol-secret")
    with imapfill.connect(source_dovecot, "carol") as client:
        assert client.folder_exists("INBOX")
    source_dovecot.add_user("carol", "carol-other!")  # same length: only the mtime changes
    with imapfill.connect(source_dovecot, "carol") as client:
        assert client.folder_exists("INBOX")


def test_chmod_000_folder_fails_select_with_no(source_dovecot: DovecotServer) -> None:
    imapfill.create_folder(source_dovecot, "alice", "Locked")
    folder = source_dovecot.maildir("alice") / ".Locked"
    assert folder.stat().st_uid != 0 or os.geteuid() != 0, "mail processes must not run as root"
    folder.chmod(0o000)

    with imapfill.connect(source_dovecot, "alice") as client:
        # Dovecot 2.3.19 answers: NO [SERVERBUG] Internal error occurred. Refer to server log
        # for more information. [2026-11-29 12:03:19] (0.001 + 0.000 secs).
        # (its log has: stat(.../.Locked/tmp) failed: Permission denied ... missing +x perm)
        with pytest.raises(IMAPClientError, match=r"\[SERVERBUG\] Internal error occurred"):
            client.select_folder("Locked")
        client.select_folder("INBOX")  # the session survives
    assert "Permission denied" in source_dovecot.log_text()


def test_quota_max_mail_size_refuses_a_bigger_append(dovecot_factory: Factory) -> None:
    server = dovecot_factory(quota_max_mail_size="1M")
    big = MESSAGE + b"x" * (1024 * 1024)
    # NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration
    # (0.001 + 0.000 secs).
    with pytest.raises(IMAPClientError, match=r"\[LIMIT\] Mail size is larger than the maximum size"):
        imapfill.append(server, "alice", "INBOX", big)
    assert imapfill.append(server, "alice", "INBOX", MESSAGE) == 1


def test_quota_storage_refuses_appends_over_quota(dovecot_factory: Factory) -> None:
    server = dovecot_factory(quota_storage="1M")
    part = MESSAGE + b"x" * (400 * 1024)
    imapfill.append(server, "alice", "INBOX", part)
    imapfill.append(server, "alice", "INBOX", part)
    # NO [OVERQUOTA] Quota exceeded (mailbox for user is full) (0.001 + 0.000 secs).
    with pytest.raises(IMAPClientError, match=r"\[OVERQUOTA\] Quota exceeded"):
        imapfill.append(server, "alice", "INBOX", part)


def test_tls_verifies_against_ca_file(dovecot_factory: Factory) -> None:
    server = dovecot_factory(tls=True)
    assert server.ca_file is not None and server.imaps_port and server.pop3s_port
    context = ssl.create_default_context(cafile=str(server.ca_file))

    for host in ("127.0.0.1", "localhost"):
        with IMAPClient(host, port=server.imaps_port, ssl=True, ssl_context=context, timeout=10) as client:
            client.login("alice", server.users["alice"])
        with IMAPClient(host, port=server.imap_port, ssl=False, timeout=10) as client:
            client.starttls(context)
            client.login("alice", server.users["alice"])
        pop = poplib.POP3_SSL(host, server.pop3s_port, context=context, timeout=10)
        pop.user("alice*admin")
        pop.pass_(server.master_password)
        pop.quit()

    with pytest.raises(ssl.SSLCertVerificationError):
        IMAPClient(server.host, port=server.imaps_port, ssl=True, ssl_context=ssl.create_default_context())


def test_snapshot_round_trip_and_servers_are_independent(
    source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    imapfill.create_folder(source_dovecot, "alice", "Ablage.Größe")  # Maildir++: ".Ablage.Größe"
    when = dt.datetime(2023, 5, 6, 7, 8, 9, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    uid = imapfill.append(
        source_dovecot, "alice", "Ablage.Größe", MESSAGE, ["\\Seen", "$Forwarded"], when, master=True
    )
    assert uid == 1

    assert imapfill.folder_snapshot(source_dovecot, "alice") == {
        "INBOX": [],
        # "Ablage" itself is a \Noselect placeholder and is left out
        "Ablage.Größe": [(MESSAGE, frozenset({"\\Seen", "$Forwarded"}), when)],
    }
    assert imapfill.folder_snapshot(target_dovecot, "alice") == {"INBOX": []}
    assert source_dovecot.imap_port != target_dovecot.imap_port


def test_start_failure_reports_the_log(dovecot_factory: Factory) -> None:
    with pytest.raises(DovecotError, match="Unknown setting: no_such_setting"):
        dovecot_factory(extra_conf="no_such_setting = 1\n")
