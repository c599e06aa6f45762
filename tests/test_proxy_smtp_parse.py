"""The SMTP proxy's parsers (pure, never raising) and a fuzzed live session (the proxy never dies on input)."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from proxy_smtp_lab import ProxyThread, StaticRouter, smtp_backend
from servers.process import HOST, free_ports

from runners.plan.proxy_smtp_options import ProxySmtpSettings
from runners.proxy.contracts import TlsMode
from runners.proxy.smtp_io import Line
from runners.proxy.smtp_parse import (
    Command,
    MailPath,
    decode_b64_text,
    decode_plain,
    helo_name,
    parse_command,
    parse_mail_path,
    size_param,
)


def test_commands() -> None:
    assert parse_command(b"mail FROM:<a@b.test> SIZE=10\r\n") == Command("MAIL", "FROM:<a@b.test> SIZE=10")
    assert parse_command(b"QUIT\n") == Command("QUIT", "")
    assert parse_command(b"\x00\xffGET\r\n").verb == ""
    assert parse_command(b"").verb == ""


def test_mail_paths() -> None:
    assert parse_mail_path("FROM:<a@b.test> SIZE=10 BODY=8BITMIME", "FROM") == MailPath(
        "a@b.test", {"SIZE": "10", "BODY": "8BITMIME"}, "SIZE=10 BODY=8BITMIME"
    )
    assert parse_mail_path("FROM:<>", "FROM") == MailPath("", {}, "")
    assert parse_mail_path("TO: <c@d.test>", "TO") == MailPath("c@d.test", {}, "")
    assert parse_mail_path("TO:<@relay.test:c@d.test>", "TO") == MailPath("c@d.test", {}, "")
    assert parse_mail_path("TO:c@d.test", "TO") == MailPath("c@d.test", {}, "")
    for bad in ("TO:<>", "TO:<c d@x.test>", "TO:<c@x.test", "TO:<nodomain>", "FROM:<a@b.test>",
                "TO:<a\r@b.test>", "TO:<" + "a" * 300 + "@b.test>", "TO:<a@b.test> =x"):  # fmt: skip
        assert parse_mail_path(bad, "TO") is None, bad
    assert size_param(MailPath("a@b.test", {"SIZE": "x"})) is None


def test_helo_names_are_cleaned_before_the_proxy_repeats_them() -> None:
    assert helo_name("mail.example.test extra") == "mail.example.test"
    assert helo_name("[IPv6:::1]") == "[IPv6:::1]"
    assert helo_name("evil\x00\x1b]0;x\x07.test") == "evil]0x.test"
    assert helo_name("") == helo_name("\x00") == "unknown"
    assert len(helo_name("a" * 1000)) == 255


def test_sasl_responses() -> None:
    assert decode_plain("AGJvYgBzZWNyZXQ=") == ("", "bob", "secret")
    assert decode_plain("Ym9iAHNlY3JldA==") is None  # two parts, not three
    assert decode_plain("!!!") is None and decode_plain("AAA") is None
    assert decode_b64_text("dXNlcg==") == "user"
    assert decode_b64_text("/w==") is None  # not UTF-8


def test_bare_newlines_are_seen() -> None:
    assert not Line(b"text\r\n").bare_newline
    assert Line(b"text\n").bare_newline
    assert Line(b"te\rxt\r\n").bare_newline
    assert Line(b"te\nxt\r\n").bare_newline


@given(st.binary(max_size=600))
def test_the_parsers_never_raise(data: bytes) -> None:
    command = parse_command(data)
    for keyword in ("FROM", "TO"):
        path = parse_mail_path(command.arg, keyword)
        if path is not None:
            size_param(path)
    text = data.decode("latin-1")
    helo_name(text)
    decode_plain(text)
    decode_b64_text(text)
    _ = Line(data).bare_newline


# -- the live proxy under fuzzed sessions: no backend is up, so every path answers fast --

_WORDS = [b"EHLO x", b"HELO x", b"MAIL FROM:<a@b.test>", b"MAIL FROM:<>", b"RCPT TO:<carol@example.test>",
          b"RCPT TO:<dave@example.test>", b"RCPT TO:<nobody@x.test>", b"DATA", b"RSET", b"NOOP", b"AUTH PLAIN",
          b"AUTH LOGIN", b"AUTH PLAIN AGJvYgBzZWNyZXQ=", b"STARTTLS", b"*", b".", b"BDAT 10", b"VRFY x",
          b"Subject: x", b"MAIL FROM:<a@b.test> SIZE=99999999999999999999", b"\x00\xff\x1b[2J"]  # fmt: skip
_LINE = st.one_of(st.sampled_from(_WORDS), st.binary(max_size=80))
_ENDING = st.sampled_from([b"\r\n", b"\n", b"\r", b""])


@pytest.fixture(scope="module")
def fuzz_proxy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyThread]:
    down_legacy, down_target = free_ports(2)
    backends = {
        "legacy": smtp_backend("legacy", down_legacy, tls=TlsMode.NONE),
        "target": smtp_backend("target", down_target, tls=TlsMode.NONE),
    }
    router = StaticRouter(
        backends, recipients={"carol@example.test": "legacy", "dave@example.test": "target"}
    )
    spool: Path = tmp_path_factory.mktemp("fuzz-spool")
    options = ProxySmtpSettings(store_and_forward=True, spool_dir=spool, client_timeout_seconds=5.0,
                                retry_first_seconds=3600.0, retry_max_seconds=3600.0)  # fmt: skip
    proxy = ProxyThread().start(router=router, backends=backends, settings=options, tls=None)
    crashes = _Crashes()
    logging.getLogger("runners.proxy.smtp_listeners").addHandler(crashes)
    proxy.crashes = crashes  # type: ignore[attr-defined]
    yield proxy
    logging.getLogger("runners.proxy.smtp_listeners").removeHandler(crashes)
    proxy.stop()


class _Crashes(logging.Handler):
    """Sessions that ended in an exception the proxy caught (a bug, even if the proxy lived on)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    lines=st.lists(st.tuples(_LINE, _ENDING), max_size=25), service=st.sampled_from(["smtp", "submission"])
)
def test_the_proxy_never_dies_on_input(fuzz_proxy: ProxyThread, lines: list[tuple[bytes, bytes]],
                                       service: str) -> None:  # fmt: skip
    port = fuzz_proxy.ports[service]
    with socket.create_connection((HOST, port), timeout=10) as sock:
        sock.recv(1024)
        sock.sendall(b"".join(line + end for line, end in lines))
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(10)
        while sock.recv(65536):  # the proxy answers what it can and closes when we are done
            pass
    with socket.create_connection((HOST, port), timeout=10) as sock:
        assert sock.recv(1024).startswith(b"220 ")  # still serving
    assert fuzz_proxy.crashes.messages == []  # type: ignore[attr-defined]
