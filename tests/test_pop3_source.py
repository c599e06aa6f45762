"""Pop3Source against a real Dovecot POP3 server (plus a scripted fake for broken-server cases)."""

from __future__ import annotations

import poplib
import socket
import threading
from collections.abc import Callable, Iterator

import pytest
from servers import imapfill
from servers.dovecot import DovecotServer

from runners.connectors.pop3_source import (
    INBOX_FOLDER,
    Pop3Source,
    imap_date,
    internaldate_from_headers,
    open_pop3_source,
)
from runners.errors import AuthError, CommandError, ConnectError, ConnectionLost
from runners.model import FetchedMessage, FetchFailure, FolderInfo, FolderState, MessageMeta
from runners.plan.model import Endpoint

DovecotFactory = Callable[..., DovecotServer]  # the dovecot_factory fixture (tests/conftest.py)

RECEIVED = (
    b"Received: from mx.example.test (mx.example.test [192.0.2.1])\r\n"
    b"\tby mail.example.test with ESMTPS id 42\r\n"
    b"\tfor <alice@example.test>; Tue, 14 Nov 2023 23:13:20 +0100 (CET)\r\n"
    b"Received: from older.example.test; Mon, 13 Nov 2023 08:00:00 -0500\r\n"
)
BODIES = [
    RECEIVED + b"From: a@example.test\r\nDate: Sun, 12 Nov 2023 01:02:03 +0000\r\n"
    b"Subject: received wins\r\n\r\nbody\r\n",
    b"From: a@example.test\r\nDate: Wed, 01 Mar 2023 09:08:07 -0800\r\nSubject: dots\r\n\r\n"
    b".\r\n..\r\n.leading dot\r\n.\r\nend\r\n",
    b"Subject: long line, no date\r\n\r\n" + b"x" * 5000 + b"\r\n" + b"y" * 3000 + b"\r\n",
    b"Subject: no final line break\r\n\r\nlast line",
]


def endpoint(server: DovecotServer, **options: object) -> Endpoint:
    values: dict[str, object] = {
        "host": server.host,
        "port": server.pop3_port,
        "security": "plain",
        "timeout": 10,
    }
    values.update(options)
    return Endpoint(type="pop3", **values)  # type: ignore[arg-type]


def fill(server: DovecotServer, user: str, bodies: list[bytes]) -> None:
    for body in bodies:
        imapfill.append(server, user, "INBOX", body)


def pop3_uidls(server: DovecotServer, user: str) -> list[str]:
    """The UIDLs as poplib itself reads them (reference for our keys)."""
    client = poplib.POP3(server.host, server.pop3_port, timeout=10)
    try:
        client.user(user)
        client.pass_(server.users[user])
        _, lines, _ = client.uidl()
        client.rset()
    finally:
        client.quit()
    return [line.split()[1].decode() for line in lines]


@pytest.fixture
def alice(source_dovecot: DovecotServer) -> Iterator[Pop3Source]:
    fill(source_dovecot, "alice", BODIES)
    source = open_pop3_source(endpoint(source_dovecot), "alice", source_dovecot.users["alice"], None)
    yield source
    source.close()


def test_lists_uidls_and_fetches_bodies_byte_for_byte(
    source_dovecot: DovecotServer, alice: Pop3Source
) -> None:
    assert alice.server == f"pop3://{source_dovecot.host}:{source_dovecot.pop3_port}"
    assert alice.list_folders() == [FolderInfo("INBOX", ("INBOX",), None)]
    assert alice.folder_states([INBOX_FOLDER]) == {"INBOX": FolderState(0, 0, len(BODIES))}

    state, metas = alice.list_messages(INBOX_FOLDER)
    assert state == FolderState(0, 0, len(BODIES))
    assert [m.key for m in metas] == pop3_uidls(source_dovecot, "alice")
    assert [(m.uid, m.size, m.flags, m.internaldate) for m in metas] == [
        (n, len(body), (), None) for n, body in enumerate(BODIES, 1)
    ]

    results = list(alice.fetch(INBOX_FOLDER, metas))
    assert all(isinstance(r, FetchedMessage) for r in results), results
    assert [r.body for r in results if isinstance(r, FetchedMessage)] == BODIES
    assert [r.meta.key for r in results] == [m.key for m in metas]
    assert [r.meta.internaldate for r in results] == [
        "14-Nov-2023 23:13:20 +0100",  # top Received:, not the older hop nor Date:
        "01-Mar-2023 09:08:07 -0800",  # Date: without Received:
        None,
        None,
    ]


def test_rerun_gives_the_same_keys_and_the_mailbox_is_untouched(
    source_dovecot: DovecotServer, alice: Pop3Source
) -> None:
    before = imapfill.folder_snapshot(source_dovecot, "alice")
    _, metas = alice.list_messages(INBOX_FOLDER)
    assert all(isinstance(r, FetchedMessage) for r in alice.fetch(INBOX_FOLDER, metas))
    alice.close()
    alice.close()  # idempotent

    again = open_pop3_source(endpoint(source_dovecot), "alice", source_dovecot.users["alice"], None)
    try:
        _, metas_again = again.list_messages(INBOX_FOLDER)
        # Abandon a fetch half-way, as a crashing worker would; RSET/close still leave no trace.
        partial = again.fetch(INBOX_FOLDER, metas_again)
        next(partial)
    finally:
        again.close()
    assert [m.key for m in metas_again] == [m.key for m in metas]
    after = imapfill.folder_snapshot(source_dovecot, "alice")
    assert after == before  # same bodies, flags (no \Seen added) and dates; nothing deleted
    assert [body for body, _flags, _date in after["INBOX"]] == BODIES


def test_master_login_via_template_and_sasl_plain(source_dovecot: DovecotServer) -> None:
    fill(source_dovecot, "alice", [b"Subject: for alice\r\n\r\na\r\n"])
    bob_bodies = [b"Subject: for bob 1\r\n\r\nb\r\n", b"Subject: for bob 2\r\n\r\nbb\r\n"]
    fill(source_dovecot, "bob", bob_bodies)
    master = (source_dovecot.master_user, source_dovecot.master_password)
    for options in ({"login_template": "{user}*{master}"}, {}):  # {}: no template -> AUTH PLAIN
        source = open_pop3_source(endpoint(source_dovecot, **options), "bob", None, master)
        try:
            _, metas = source.list_messages(INBOX_FOLDER)
            bodies = [r.body for r in source.fetch(INBOX_FOLDER, metas) if isinstance(r, FetchedMessage)]
        finally:
            source.close()
        assert bodies == bob_bodies, options


def test_wrong_password_is_an_auth_error_with_the_servers_words(source_dovecot: DovecotServer) -> None:
    with pytest.raises(AuthError) as wrong:
        open_pop3_source(endpoint(source_dovecot), "alice", "not-the-password", None)
    assert wrong.value.server_text.startswith("-ERR ")
    assert "Authentication failed" in wrong.value.server_text
    assert wrong.value.code == "AUTH" and not wrong.value.retryable
    assert "not-the-password" not in str(wrong.value)
    bad_master = ("admin", "wrong-master-password")
    for options in ({"login_template": "{user}*{master}"}, {}):
        with pytest.raises(AuthError) as master_error:
            open_pop3_source(endpoint(source_dovecot, **options), "alice", None, bad_master)
        assert "Authentication failed" in master_error.value.server_text
    with pytest.raises(AuthError):
        open_pop3_source(endpoint(source_dovecot), "alice", None, None)


def test_retr_error_is_a_failure_and_the_session_goes_on(source_dovecot: DovecotServer) -> None:
    fill(source_dovecot, "alice", BODIES[:3])
    source = open_pop3_source(endpoint(source_dovecot), "alice", source_dovecot.users["alice"], None)
    try:
        _, metas = source.list_messages(INBOX_FOLDER)
        with imapfill.connect(source_dovecot, "alice") as client:  # expunged behind our back
            client.select_folder("INBOX")
            client.delete_messages(client.search("ALL")[1:2])
            client.expunge()
        results = list(source.fetch(INBOX_FOLDER, metas))
    finally:
        source.close()
    assert [type(r) for r in results] == [FetchedMessage, FetchFailure, FetchedMessage]
    failure = results[1]
    assert isinstance(failure, FetchFailure) and failure.reason.startswith("-ERR ")
    assert "expunged" in failure.reason
    assert [r.body for r in results if isinstance(r, FetchedMessage)] == [BODIES[0], BODIES[2]]


def test_only_inbox(alice: Pop3Source) -> None:
    other = FolderInfo("Sent", ("Sent",), None)
    states = alice.folder_states([INBOX_FOLDER, other])
    assert isinstance(states["INBOX"], FolderState)
    assert isinstance(states["Sent"], CommandError)
    with pytest.raises(CommandError):
        alice.list_messages(other)


def test_tls_and_starttls_verify_against_the_ca(dovecot_factory: DovecotFactory) -> None:
    server = dovecot_factory(tls=True)
    fill(server, "alice", BODIES[:1])
    assert server.pop3s_port is not None and server.ca_file is not None
    for security, port in (("tls", server.pop3s_port), ("starttls", server.pop3_port)):
        ep = endpoint(server, security=security, port=port, ca_file=str(server.ca_file))
        source = open_pop3_source(ep, "alice", server.users["alice"], None)
        try:
            _, metas = source.list_messages(INBOX_FOLDER)
            [result] = source.fetch(INBOX_FOLDER, metas)
        finally:
            source.close()
        assert isinstance(result, FetchedMessage) and result.body == BODIES[0]
        with pytest.raises(ConnectError) as unverified:
            open_pop3_source(endpoint(server, security=security, port=port), "alice", "x", None)
        assert "CERTIFICATE_VERIFY_FAILED" in unverified.value.server_text
        insecure = endpoint(server, security=security, port=port, tls_verify=False)
        open_pop3_source(insecure, "alice", server.users["alice"], None).close()


def test_connect_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        with pytest.raises(ConnectError) as refused:
            open_pop3_source(
                Endpoint(type="pop3", host="127.0.0.1", port=port, security="plain"), "a", "b", None
            )
    assert refused.value.retryable and "refused" in refused.value.server_text.lower()


# -- a scripted server for what Dovecot won't do -------------------------------------------


class FakePop3:
    """Accepts one connection and answers each command from ``replies`` (by full line, then by
    command word); a reply of None hangs up."""

    def __init__(self, replies: dict[str, bytes | None]) -> None:
        self.replies = replies
        self.commands: list[str] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        conn, _ = self._listener.accept()
        with conn, conn.makefile("rb") as lines:
            conn.sendall(b"+OK fake ready\r\n")
            for raw in lines:
                command = raw.decode().rstrip("\r\n")
                self.commands.append(command)
                reply = self.replies.get(command, self.replies.get(command.split(" ")[0], b"-ERR what?\r\n"))
                if reply is None:
                    return
                conn.sendall(reply)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)

    def endpoint(self) -> Endpoint:
        return Endpoint(type="pop3", host="127.0.0.1", port=self.port, security="plain", timeout=5)


LOGIN_OK: dict[str, bytes | None] = {"USER": b"+OK\r\n", "PASS": b"+OK logged in\r\n", "RSET": b"+OK\r\n"}


@pytest.fixture
def fake() -> Iterator[list[FakePop3]]:
    servers: list[FakePop3] = []
    yield servers
    for server in servers:
        server.close()


SHORT = b"Subject: short\r\n\r\nx\r\n"


def test_size_mismatch_and_vanished_uidl(fake: list[FakePop3]) -> None:
    server = FakePop3(
        {
            **LOGIN_OK,
            "UIDL": b"+OK\r\n1 aaa\r\n2 bbb\r\n.\r\n",
            "LIST": b"+OK\r\n1 100\r\n2 6\r\n.\r\n",
            "RETR 1": b"+OK\r\n" + SHORT + b".\r\n",
            "RETR 2": b"+OK\r\n..dot\r\n.\r\n",
            "QUIT": b"+OK bye\r\n",
        }
    )
    fake.append(server)
    source = open_pop3_source(server.endpoint(), "u", "p", None)
    _, metas = source.list_messages(INBOX_FOLDER)
    gone = MessageMeta("zzz", 7, 1)
    results = list(source.fetch(INBOX_FOLDER, [*metas, gone]))
    source.close()
    first, second, third = results
    assert isinstance(first, FetchFailure)
    assert first.reason == f"size mismatch: server listed 100 bytes, delivered {len(SHORT)}"
    assert isinstance(second, FetchedMessage) and second.body == b".dot\r\n"  # dot-unstuffed
    assert isinstance(third, FetchFailure) and third.reason == "UIDL zzz is no longer on the server"
    assert "DELE" not in " ".join(server.commands)
    assert server.commands[-2:] == ["RSET", "QUIT"]


def test_connection_lost_mid_message(fake: list[FakePop3]) -> None:
    server = FakePop3(
        {
            **LOGIN_OK,
            "UIDL": b"+OK\r\n1 aaa\r\n.\r\n",
            "LIST": b"+OK\r\n1 100\r\n.\r\n",
            "RETR": None,
        }
    )
    fake.append(server)
    source = open_pop3_source(server.endpoint(), "u", "p", None)
    _, metas = source.list_messages(INBOX_FOLDER)
    with pytest.raises(ConnectionLost) as lost:
        list(source.fetch(INBOX_FOLDER, metas))
    assert lost.value.retryable and lost.value.operation == "RETR 1"
    source.close()  # after a drop: quiet


def test_in_use_at_login_is_retryable_not_auth(fake: list[FakePop3]) -> None:
    server = FakePop3({"USER": b"+OK\r\n", "PASS": b"-ERR [IN-USE] Mailbox locked by another session\r\n"})
    fake.append(server)
    with pytest.raises(CommandError) as in_use:
        open_pop3_source(server.endpoint(), "u", "p", None)
    assert not isinstance(in_use.value, AuthError)
    assert in_use.value.retryable and in_use.value.code == "INUSE"
    assert in_use.value.server_text == "-ERR [IN-USE] Mailbox locked by another session"


def test_master_without_sasl_uses_the_default_template(fake: list[FakePop3]) -> None:
    server = FakePop3({**LOGIN_OK, "CAPA": b"+OK\r\nUSER\r\nUIDL\r\n.\r\n", "QUIT": b"+OK\r\n"})
    fake.append(server)
    open_pop3_source(server.endpoint(), "bob", None, ("admin", "pw")).close()
    assert server.commands[:3] == ["CAPA", "USER bob*admin", "PASS pw"]


def test_header_dates() -> None:
    assert (
        internaldate_from_headers(b"Date: Tue, 1 Aug 2023 10:00:00 +0530\r\n\r\n")
        == "01-Aug-2023 10:00:00 +0530"
    )
    folded = b"Received: by x;\r\n Tue, 1 Aug 2023 10:00:00 GMT\r\nDate: junk\r\n\r\nReceived: body; no\r\n"
    assert internaldate_from_headers(folded) == "01-Aug-2023 10:00:00 +0000"
    assert internaldate_from_headers(
        b"Received: by x; garbage\r\nDate: 2 Jan 2020 03:04:05 -0000\r\n\r\n"
    ) == ("02-Jan-2020 03:04:05 +0000")
    assert internaldate_from_headers(b"Subject: none\r\n\r\nDate: Tue, 1 Aug 2023 10:00:00 +0000\r\n") is None
    assert imap_date(b"Tue, 31 Feb 2023 10:00:00 +0000") is None
    assert imap_date(b"Sat, 9 Dec 2023 23:59:59 -0330 (NST)") == "09-Dec-2023 23:59:59 -0330"
