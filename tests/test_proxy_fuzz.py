"""Fuzzing the proxy's command parsers: the IMAP tokenizer and the SASL decoders raise only their
documented errors, and a running proxy fed any bytes before login answers the next client as before
(no session ends by an unexpected exception). Derandomized: every run tries the same examples."""

from __future__ import annotations

import contextlib
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, example, given, settings
from hypothesis import strategies as st
from proxy_harness import ProxyThread
from servers.process import free_ports

from runners.proxy import imap_parse
from runners.proxy.imap_parse import ImapSyntaxError, tokenize, valid_tag
from runners.proxy.sasl import SaslError, decode, plain_credentials

FUZZ = settings(max_examples=200, derandomize=True, database=None, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip

IMAP_WORDS = [
    b"a ", b"* ", b"+ ", b"LOGIN ", b"AUTHENTICATE ", b"PLAIN ", b"LOGIN", b"STARTTLS", b"CAPABILITY", b"ID ",
    b"NOOP", b"LOGOUT", b"SELECT ", b"(", b")", b'"', b"\\", b"{", b"}", b"{5}", b"{5+}", b"{99999999999}",
    b"{0}", b"\r\n", b"\r", b"\n", b"\x00", b" ", b"alice", b"=", b"AGFsaWNlAHg=", b"*", b"\xff\xfe", b"\xc3",
    b"x" * 300,
]  # fmt: skip
POP3_WORDS = [b"USER ", b"PASS ", b"AUTH ", b"PLAIN ", b"CAPA", b"STLS", b"QUIT", b"TOP ", b"\r\n", b"\n",
              b"\x00", b" ", b"alice", b"=", b"*", b"\xff", b"AGFsaWNlAHg="]  # fmt: skip
imap_bytes = st.lists(st.sampled_from(IMAP_WORDS), max_size=30).map(b"".join)
pop3_bytes = st.lists(st.sampled_from(POP3_WORDS), max_size=30).map(b"".join)


@FUZZ
@given(st.text(max_size=200))
def test_tokenize_raises_only_its_own_error(line: str) -> None:
    tokens: list[str] = []
    try:
        literal = tokenize(line, tokens)
    except ImapSyntaxError:
        return
    assert all(isinstance(t, str) for t in tokens)
    assert literal is None or literal.size >= 0
    valid_tag(tokens[0] if tokens else "")


def _tokenize_char_by_char(line: str) -> list[str] | None:
    """The tokenizer's general path alone (what its shortcut for lines of atoms must agree with)."""
    tokens: list[str] = []
    try:
        imap_parse.tokenize(line + " {0}", tokens)  # a literal's announcement: never the shortcut
    except ImapSyntaxError:
        return None
    return tokens


@FUZZ
@given(st.text(alphabet=st.sampled_from(list(' aZ0{}+*%\\\t\x7f\x85\xa0\u3000\xe9"()')), max_size=40))
def test_the_tokenizers_shortcut_agrees_with_its_general_path(line: str) -> None:
    assume(not line.endswith("}"))  # a literal's announcement takes the general path anyway
    tokens: list[str] | None = []
    try:
        tokenize(line, tokens)
    except ImapSyntaxError:
        tokens = None
    assert tokens == _tokenize_char_by_char(line)


@FUZZ
@given(imap_bytes)
def test_tokenize_of_imap_like_lines(data: bytes) -> None:
    for line in data.split(b"\n"):
        try:
            tokenize(line.decode("utf-8", "surrogateescape"), [])
        except ImapSyntaxError:
            pass


@FUZZ
@given(st.one_of(st.text(max_size=80), st.binary(max_size=80).map(lambda b: b.decode("latin-1"))))
def test_sasl_decoders_raise_only_their_own_error(text: str) -> None:
    try:
        plain_credentials(decode(text))
    except SaslError:
        pass


def test_tokenize_reads_what_a_login_sends() -> None:
    tokens: list[str] = []
    assert tokenize('a LOGIN "al\\"ice" {12}', tokens) is not None
    assert tokens == ["a", "LOGIN", 'al"ice']
    tokens = []
    assert tokenize('b ID ("name" "x")', tokens) is None and tokens == ["b", "ID", "(", "name", "x", ")"]
    with pytest.raises(ImapSyntaxError):
        tokenize('c LOGIN "unterminated', [])


@pytest.fixture(scope="module")
def running_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """A proxy whose backends are a closed port (logins end UNAVAILABLE at once), no lock-out."""
    root: Path = tmp_path_factory.mktemp("fuzz")
    imap, pop3, closed = free_ports(3)
    (root / "mailboxes.csv").write_text("source,target,wave\nalice,alice,pilot\n")
    (root / "plan.toml").write_text(f"""
[source]
type = "imap"
host = "127.0.0.1"
port = {closed}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:SRC_MASTER_PW"

[target]
type = "imap"
host = "127.0.0.1"
port = {closed}
security = "plain"
auth = "master"
master_user = "admin"
master_password = "env:DST_MASTER_PW"

[mailboxes]
csv = "mailboxes.csv"

[proxy]
imap_port = {imap}
pop3_port = {pop3}

[proxy.backends.legacy]
pop3 = "127.0.0.1:{closed}"
pop3_tls = "none"

[proxy.limits]
auth_failure_delay_seconds = 0
lockout_failures = 1000000
max_unauthenticated_per_address = 1000
max_line_bytes = 1024
login_timeout_seconds = 0.5
""")
    with ProxyThread(root / "plan.toml"):
        yield {"imap": imap, "pop3": pop3}


def feed(port: int, data: bytes, goodbye: bytes) -> None:
    """Send ``data`` then a goodbye, and read until the proxy hangs up (after the goodbye, a limit, or
    its login timeout when the data left it waiting for more): the session has ended by then."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data + b"\r\n" + goodbye)
        sock.shutdown(socket.SHUT_WR)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(65536):
                pass


def greets(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        return sock.recv(1000)


@settings(FUZZ, max_examples=80)
@given(imap_bytes, pop3_bytes)
@example(b"\xff\xfe NOOP\r\n", b"USER \xff\r\nPASS \xfe\r\n")  # not UTF-8: a tag, a login
def test_the_running_proxy_survives_any_input_before_login(
    running_proxy: dict[str, int], caplog: pytest.LogCaptureFixture, imap: bytes, pop3: bytes
) -> None:
    with caplog.at_level(logging.WARNING, logger="cutover.proxy"):
        feed(running_proxy["imap"], imap, b"zz LOGOUT\r\n")
        feed(running_proxy["pop3"], pop3, b"QUIT\r\n")
        assert greets(running_proxy["imap"]).startswith(b"* OK [CAPABILITY IMAP4rev1 ")
        assert greets(running_proxy["pop3"]).startswith(b"+OK")
    assert not [r for r in caplog.records if "ended by" in r.getMessage()]
