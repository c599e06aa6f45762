"""Store-and-forward survives ``kill -9``: spooled mail is delivered after the restart, once per recipient.

The proxy runs alone in a process (``python tests/proxy_smtp_lab.py CONFIG.json``) in front of two
real Exims; the target is down while the message comes in. The proxy delivers the legacy's copy,
is killed with SIGKILL while the target's copy waits in the spool, and is started again with the
target up: the target gets its copy, and the legacy doesn't get a second one.
"""

from __future__ import annotations

import json
import os
import random
import signal
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from proxy_smtp_lab import MailHub, wait_for
from servers.process import HOST, die_with_parent, free_ports, port_open
from servers.smtp import find_exim

from runners.proxy.spool import Outcome, Recipient, Spool, SpoolLocked

LAB = Path(__file__).parent / "proxy_smtp_lab.py"
ROOT = Path(__file__).parent.parent
MESSAGE = b"From: x@sender.test\r\nSubject: spooled\r\n\r\nWaits for the target.\r\n"
RECIPIENTS = {"carol@example.test": "legacy", "dave@example.test": "target"}


class ProxyProcess:
    def __init__(self, config: Path, log: Path) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        with log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, str(LAB), str(config)], stdout=out, stderr=out, env=env,
                start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        self.port = json.loads(config.read_text())["port"]
        self.log = log
        if not wait_for(lambda: port_open(self.port) or self.proc.poll() is not None, timeout=30):
            raise RuntimeError(f"the proxy did not start:\n{log.read_text()}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"the proxy exited:\n{log.read_text()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def hubs() -> Iterator[list[MailHub]]:
    if find_exim() is None:
        pytest.fail("exim is not installed: run ./scripts/test (it installs everything)", pytrace=False)
    started: list[MailHub] = []
    yield started
    for hub in started:
        print(f"--- exim log ({hub.root}) ---\n{hub.log_text()}")
        hub.stop()


def _config(path: Path, port: int, spool: Path, legacy: int, target: int, **extra: object) -> Path:
    backends = {"legacy": {"port": legacy, "tls": "none"}, "target": {"port": target, "tls": "none"}}
    path.write_text(json.dumps({"port": port, "spool_dir": str(spool), "backends": backends,
                                "recipients": RECIPIENTS, **extra}))  # fmt: skip
    return path


def test_spooled_mail_survives_kill_9_and_arrives_once(tmp_path: Path, hubs: list[MailHub]) -> None:
    legacy = MailHub(mailboxes=["carol@example.test"], users={}, hostname="legacy.cutover.test")
    hubs.append(legacy.start())
    port, target_down = free_ports(2)
    spool = tmp_path / "spool"
    log = tmp_path / "proxy.log"
    first = ProxyProcess(_config(tmp_path / "one.json", port, spool, legacy.port, target_down), log)
    proxies = [first]
    try:
        with smtplib.SMTP(HOST, port, timeout=30) as client:
            assert client.sendmail("x@sender.test", list(RECIPIENTS), MESSAGE) == {}
        # The legacy's copy goes out at once and is recorded; the target's waits in the spool.
        assert wait_for(lambda: len(legacy.messages("carol@example.test")) == 1)
        assert wait_for(lambda: any((spool / "queue").glob("*.done")))
        first.kill()
        assert len(list((spool / "queue").glob("*.msg"))) == 1

        target = MailHub(mailboxes=["dave@example.test"], users={}, hostname="target.cutover.test")
        hubs.append(target.start())
        second = ProxyProcess(_config(tmp_path / "two.json", port, spool, legacy.port, target.port), log)
        proxies.append(second)
        assert wait_for(lambda: len(target.messages("dave@example.test")) == 1), log.read_text()
        assert wait_for(lambda: not list((spool / "queue").iterdir()))
        assert b"Waits for the target." in target.messages("dave@example.test")[0]
        assert len(legacy.messages("carol@example.test")) == 1  # not delivered a second time
        assert len(target.messages("dave@example.test")) == 1
    finally:
        for proxy in proxies:
            proxy.kill()


def test_a_half_received_message_is_dropped_at_start_and_records_are_atomic(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    draft = spool.begin("x@sender.test", "BODY=8BITMIME", [Recipient("a@x.test", "legacy"),
                                                          Recipient("b@x.test", "target")])  # fmt: skip
    draft.write(b"Subject: s\r\n\r\nbody\r\n")
    draft.commit()
    half = spool.begin("y@sender.test", "", [Recipient("c@x.test", "legacy")])
    half.write(b"Subject: never finished\r\n")  # the sender never got 250: a crash here loses nothing
    [spool_id] = spool.pending()
    spool.record(spool_id, Outcome("legacy", delivered=(0,)))
    spool.close()
    again = Spool(tmp_path)  # a restart
    assert again.pending() == [spool_id] and not list((tmp_path / "tmp").iterdir())
    pending = again.load(spool_id)
    assert pending is not None and pending.finished == {0}
    assert pending.envelope.mail_params == "BODY=8BITMIME"
    with again.open_body(spool_id) as body:
        assert body.read() == b"Subject: s\r\n\r\nbody\r\n"
    again.record(spool_id, Outcome("target", refused=((1, "550 5.1.1 no such user"),)))
    pending = again.load(spool_id)
    assert (
        pending is not None
        and pending.finished == {0, 1}
        and pending.refused == ((1, "550 5.1.1 no such user"),)
    )
    again.give_up(spool_id, {"refused": [["b@x.test", "550 5.1.1 no such user"]]})
    assert again.pending() == [] and (tmp_path / "failed" / f"{spool_id}.msg").exists()


def test_a_kill_between_a_backends_250_and_its_record_delivers_that_copy_twice(
    tmp_path: Path, hubs: list[MailHub]
) -> None:
    """The window the spool admits to, pinned: the copy is duplicated, never lost, and only that one."""
    legacy = MailHub(mailboxes=["carol@example.test"], users={}, hostname="legacy.cutover.test")
    target = MailHub(mailboxes=["dave@example.test"], users={}, hostname="target.cutover.test")
    hubs.extend([legacy.start(), target.start()])
    port, target_down = free_ports(2)
    spool, log = tmp_path / "spool", tmp_path / "proxy.log"
    # First the target is down, so the legacy's delivery is the first (and only) record before the kill.
    first = ProxyProcess(_config(tmp_path / "one.json", port, spool, legacy.port, target_down,
                                 kill_before_record=1), log)  # fmt: skip
    proxies = [first]
    try:
        with smtplib.SMTP(HOST, port, timeout=30) as client:
            assert client.sendmail("x@sender.test", list(RECIPIENTS), MESSAGE) == {}
        assert wait_for(lambda: first.proc.poll() is not None), log.read_text()  # killed itself at the record
        assert len(legacy.messages("carol@example.test")) == 1
        second = ProxyProcess(_config(tmp_path / "two.json", port, spool, legacy.port, target.port), log)
        proxies.append(second)
        assert wait_for(lambda: not list((spool / "queue").iterdir()))
        assert len(legacy.messages("carol@example.test")) == 2  # the window: delivered again
        assert len(target.messages("dave@example.test")) == 1
    finally:
        for proxy in proxies:
            proxy.kill()


def test_random_kills_during_delivery_lose_nothing(tmp_path: Path, hubs: list[MailHub]) -> None:
    """Ten messages for both backends, the proxy SIGKILLed at random moments of their delivery:
    every copy arrives, and a kill duplicates at most the one delivery it interrupted."""
    legacy = MailHub(mailboxes=["carol@example.test"], users={}, hostname="legacy.cutover.test")
    target = MailHub(mailboxes=["dave@example.test"], users={}, hostname="target.cutover.test")
    hubs.extend([legacy.start(), target.start()])
    port, down_a, down_b = free_ports(3)
    spool, log = tmp_path / "spool", tmp_path / "proxy.log"
    count = 10
    spooling = ProxyProcess(_config(tmp_path / "down.json", port, spool, down_a, down_b), log)
    try:
        with smtplib.SMTP(HOST, port, timeout=30) as client:
            for n in range(count):
                body = MESSAGE.replace(b"Subject: spooled", f"Subject: msg-{n}".encode())
                assert client.sendmail("x@sender.test", list(RECIPIENTS), body) == {}
    finally:
        spooling.kill()
    up = _config(tmp_path / "up.json", port, spool, legacy.port, target.port)
    chance = random.Random(os.environ.get("PYTEST_XDIST_WORKER", "") + str(os.getpid()))
    kills = 0
    for _ in range(3):
        proxy = ProxyProcess(up, log)
        time.sleep(chance.uniform(0.0, 0.4))  # a random moment of the delivery, not a wait for one
        proxy.kill()
        kills += 1
    final = ProxyProcess(up, log)
    try:
        assert wait_for(lambda: not list((spool / "queue").iterdir()), timeout=60), log.read_text()
    finally:
        final.kill()
    duplicates = 0
    for hub, address in ((legacy, "carol@example.test"), (target, "dave@example.test")):
        got = hub.messages(address)
        for n in range(count):
            copies = sum(f"Subject: msg-{n}\n".encode() in m for m in got)
            assert copies >= 1, f"msg-{n} lost for {address}"
            duplicates += copies - 1
    assert duplicates <= kills


def test_one_process_at_a_time_uses_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    with pytest.raises(SpoolLocked):
        Spool(tmp_path)  # a second delivery loop would deliver everything twice
    first.close()
    Spool(tmp_path).close()
