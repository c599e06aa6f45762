"""Servers that misbehave on purpose (lab/hostile.py): bounded memory, a clear reason naming the
limit, the run goes on, SIGTERM stops it, a missing STARTTLS is final."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_lab import CUTOVER, Lab, wait_for, write_plan
from servers.dovecot import DovecotServer

from lab.hostile import HUGE_LITERALS, hostile_server
from runners.connectors import pop3_source
from runners.connectors.imap_common import list_folders
from runners.connectors.pop3_source import open_pop3_source
from runners.errors import ConnectError, ConnectionLost, LimitExceeded
from runners.imap.wire import ImapConnection
from runners.model import FolderInfo, MessageMeta
from runners.plan.model import Endpoint

PASSWORD = "hostile-test-Secret-42"
#: Peak memory of a whole `cutover run` against a hostile server; the issue measured 1.8 to 2.96 GB.
MAX_RSS_MB = 300
LAUNCHER = Path(__file__).with_name("rss_launcher.py")


def imap(port: int) -> ImapConnection:
    conn = ImapConnection("127.0.0.1", port, security="plain", timeout=10)
    conn.connect()
    return conn


@pytest.mark.parametrize("size", HUGE_LITERALS)
def test_a_huge_literal_at_login_fails_with_the_limit_named(size: bytes) -> None:
    with hostile_server(f"login-literal-{size.decode()}") as server:
        conn = imap(server.port)
        with pytest.raises(LimitExceeded) as caught:
            conn.login("alice", PASSWORD)
    text = caught.value.server_text
    assert f"literal of {size.decode()} bytes" in text and "1048576 bytes" in text
    assert PASSWORD not in str(caught.value)
    assert not caught.value.retryable


@pytest.mark.parametrize("scenario", ["login-endless", "list-endless", "meta-endless"])
def test_an_endless_line_fails_with_the_line_limit(scenario: str) -> None:
    with hostile_server(scenario) as server:
        conn = imap(server.port)
        with pytest.raises(LimitExceeded, match="longer than 1048576 bytes"):
            conn.login("alice", PASSWORD)
            list_folders(conn)
            conn.check(b"EXAMINE INBOX", "EXAMINE INBOX")
            conn.check(b"UID FETCH 1:* (UID RFC822.SIZE FLAGS INTERNALDATE)", "metadata")


def test_a_body_literal_over_the_listed_size_fails_before_allocating() -> None:
    from runners.connectors.imap_source import ImapSource

    with hostile_server("body-literal-3000000000") as server:
        conn = imap(server.port)
        conn.login("alice", PASSWORD)
        source = ImapSource(conn)
        inbox = next(f for f in source.list_folders() if f.raw_name == "INBOX")
        _, metas = source.list_messages(inbox)
        with pytest.raises(ConnectionLost) as caught:
            list(source.fetch(inbox, metas[:1]))
    assert "literal of 3000000000 bytes" in caught.value.server_text
    assert f"listed size of {metas[0].size} bytes" in caught.value.server_text


def test_a_trickling_server_hits_the_command_deadline() -> None:
    with hostile_server("body-trickle") as server:
        conn = imap(server.port)
        conn.login("alice", PASSWORD)
        conn.check(b"EXAMINE INBOX", "EXAMINE INBOX")
        conn.max_command_seconds = 1.0  # the deadline is what is tested, not its default of an hour
        with pytest.raises(LimitExceeded, match="within 1 s"):
            conn.check(b"UID FETCH 1 (UID BODY.PEEK[])", "UID FETCH 1")


def pop3_endpoint(port: int, security: str = "plain") -> Endpoint:
    return Endpoint(type="pop3", host="127.0.0.1", port=port, security=security, timeout=10)


def test_a_never_ending_pop3_retr_fails_against_its_list_size() -> None:
    with hostile_server("pop3-retr-endless", "pop3") as server:
        source = open_pop3_source(pop3_endpoint(server.port), "alice", PASSWORD, None)
        inbox = FolderInfo(raw_name="INBOX", path=("INBOX",), separator=None)
        _, metas = source.list_messages(inbox)
        with pytest.raises(ConnectionLost) as caught:
            list(source.fetch(inbox, metas[:1]))
    assert f"LIST size of {metas[0].size} bytes" in str(caught.value)


def test_a_trickling_pop3_retr_hits_the_command_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pop3_source, "MAX_COMMAND_SECONDS", 1.0)
    with hostile_server("pop3-retr-trickle", "pop3") as server:
        source = open_pop3_source(pop3_endpoint(server.port), "alice", PASSWORD, None)
        meta = MessageMeta("uid-1", 1, 26)
        with pytest.raises(ConnectionLost, match="within 1 s"):
            list(source.fetch(FolderInfo(raw_name="INBOX", path=("INBOX",), separator=None), [meta]))


def test_no_starttls_is_a_final_refusal() -> None:
    with hostile_server("no-starttls") as server:
        conn = ImapConnection("127.0.0.1", server.port, security="starttls", timeout=10)
        with pytest.raises(ConnectError, match="does not offer STARTTLS") as caught:
            conn.connect()
    assert not caught.value.retryable
    with hostile_server("pop3-no-stls", "pop3") as server:
        with pytest.raises(ConnectError) as refused:
            open_pop3_source(pop3_endpoint(server.port, "starttls"), "alice", PASSWORD, None)
    assert not refused.value.retryable


# -- whole runs -------------------------------------------------------------------------------


class HostileSide:
    def __init__(self, port: int) -> None:
        self.imap_port = port
        self.master_user = "admin"


@pytest.fixture
def hostile_lab(tmp_path: Path, target_dovecot: DovecotServer) -> Iterator[tuple[Path, dict[str, str]]]:
    env = dict(os.environ, SRC_MASTER_PW=PASSWORD, DST_MASTER_PW=target_dovecot.master_password)
    yield tmp_path, env


def start_run(
    root: Path, port: int, target: DovecotServer, env: dict[str, str], *, measure: bool = False
) -> subprocess.Popen[bytes]:
    """``cutover run`` against the hostile source; ``measure``: through the launcher that records the
    run's own peak RSS (``finish`` reads it)."""
    plan = write_plan(
        root,
        HostileSide(port),
        target,
        mailboxes=(("alice", "alice", "pilot"), ("bob", "bob", "pilot")),
        source_extra='login_template = "{user}*{master}"',
    )
    with open(root / "out.txt", "wb") as out, open(root / "err.txt", "wb") as err:
        launcher = [sys.executable, str(LAUNCHER), str(root / "rss.txt")] if measure else []
        return subprocess.Popen(
            [
                *launcher,
                *CUTOVER,
                *("run", "--plan", str(plan), "--wave", "pilot", "--output", "json", "--workers", "1"),
            ],
            env=env,
            cwd=root,
            stdout=out,
            stderr=err,
        )


def finish(proc: subprocess.Popen[bytes], root: Path) -> tuple[int, str, str, float]:
    """Exit status, stdout, stderr and peak RSS (MB) of a run started with ``measure=True`` (its own
    rusage, from the launcher's wait4: not this process's size carried over by fork)."""
    proc.wait()
    out, err = ((root / name).read_text(errors="replace") for name in ("out.txt", "err.txt"))
    return proc.returncode, out, err, int((root / "rss.txt").read_text()) / 1024


@pytest.mark.parametrize(
    "scenario,said",
    [
        ("body-literal-999999999999", "literal of 999999999999 bytes"),
        ("body-literal-99999999999999999999", "literal of 99999999999999999999 bytes"),
        ("meta-endless", "longer than 1048576 bytes"),
        ("login-literal-3000000000", "literal of 3000000000 bytes"),
    ],
)
def test_a_run_against_a_hostile_source_stays_small_and_goes_on(
    hostile_lab: tuple[Path, dict[str, str]], target_dovecot: DovecotServer, scenario: str, said: str
) -> None:
    root, env = hostile_lab
    with hostile_server(scenario) as server:
        code, out, err, rss = finish(start_run(root, server.port, target_dovecot, env, measure=True), root)
    assert code == 1, err
    assert "Traceback" not in err and "MemoryError" not in err and "OverflowError" not in err
    summary = json.loads(out)
    assert summary["status"] == "partial"
    status = Lab(target_dovecot, target_dovecot, root, root / "plan.toml").cutover(
        "status", "--plan", str(root / "plan.toml"), "--output", "json", env=env
    )
    assert "running" not in {m["state"] for m in json.loads(status.stdout)["mailboxes"]}
    logs = "".join(p.read_text() for p in (root / ".cutover" / "logs").glob("*.log"))
    assert said in logs + status.stdout
    assert rss < MAX_RSS_MB, f"peak RSS {rss:.0f} MB"
    print(f"{scenario}: peak RSS {rss:.0f} MB")


def test_sigterm_twice_stops_a_run_blocked_in_a_read(
    hostile_lab: tuple[Path, dict[str, str]], target_dovecot: DovecotServer
) -> None:
    root, env = hostile_lab
    with hostile_server("body-trickle") as server:
        proc = start_run(root, server.port, target_dovecot, env)
        assert server.reached("body").wait(60), "the run never asked for a body"
        proc.send_signal(signal.SIGTERM)
        # Signals of one kind don't queue: the second is sent once the first was taken.
        wait_for(lambda: b"stopping after the current batch" in (root / "err.txt").read_bytes())
        proc.send_signal(signal.SIGTERM)
        code = proc.wait()
    err = (root / "err.txt").read_text(errors="replace")
    assert code == 130, err
    assert "Traceback" not in err


if sys.platform != "linux":  # pragma: no cover - RUSAGE_CHILDREN figures are Linux's
    pytestmark = pytest.mark.skip("peak RSS is measured the Linux way")
