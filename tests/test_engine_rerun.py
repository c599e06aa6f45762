"""A rerun with nothing new asks each server for its folders' state in one pipelined STATUS flight.

The plan points at a relay on loopback that forwards every byte both ways and records the commands
each connection sends. Once a connection sends its first STATUS, the relay holds the server's
answers back until all the STATUS commands the folder count calls for have arrived: a pipelined
client sends them all without waiting and gets its answers; one that waits for each answer before
sending the next would hang there (and the run would fail on its timeout).
"""

from __future__ import annotations

import re
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from corpus import message
from dovecot_lab import make_lab, write_plan
from servers import imapfill
from servers.dovecot import DovecotServer
from servers.logins import dovecot_logins

FOLDERS = ["Archive", "Archive.2023", "Sent", "Trash"]
_COMMAND = re.compile(rb"^[A-Za-z0-9]+ (?:UID )?([A-Za-z]+)")


class _Connection:
    def __init__(self, client: socket.socket, server: socket.socket, flight: int) -> None:
        self.client, self.server, self.flight = client, server, flight
        self.commands: list[str] = []
        self._statuses = 0
        self._held: list[bytes] | None = None  # server bytes held back while a STATUS flight is open
        self._lock = threading.Lock()

    def client_to_server(self) -> None:
        pending = b""
        while chunk := _recv(self.client):
            self.server.sendall(chunk)
            pending += chunk
            *lines, pending = pending.split(b"\r\n")
            for line in lines:
                self._command(line)
        self.server.shutdown(socket.SHUT_WR)

    def _command(self, line: bytes) -> None:
        match = _COMMAND.match(line)
        if match is None:  # a continuation (AUTHENTICATE's base64) or a literal's bytes
            return
        verb = match.group(1).decode().upper()
        self.commands.append(verb)
        with self._lock:
            if verb == "STATUS":
                self._statuses += 1
                if self._statuses == 1:
                    self._held = []
            if self._held is not None and (verb != "STATUS" or self._statuses >= self.flight):
                self.client.sendall(b"".join(self._held))
                self._held = None

    def server_to_client(self) -> None:
        while chunk := _recv(self.server):
            with self._lock:
                if self._held is not None:
                    self._held.append(chunk)
                else:
                    self.client.sendall(chunk)
        try:
            self.client.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


class CountingRelay:
    """A loopback TCP relay in front of one IMAP server (see the module docstring)."""

    def __init__(self, upstream: DovecotServer, flight: int) -> None:
        self.upstream, self.flight = upstream, flight
        self.master_user = upstream.master_user
        self.connections: list[_Connection] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.imap_port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._spawn(self._accept)

    def _spawn(self, target: object) -> None:
        thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.upstream.imap_port))
            connection = _Connection(client, server, self.flight)
            self.connections.append(connection)
            self._spawn(connection.client_to_server)
            self._spawn(connection.server_to_client)

    def close(self) -> None:
        self._listener.close()
        for connection in self.connections:
            for sock in (connection.client, connection.server):
                sock.close()


@pytest.fixture
def relays(
    source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> Iterator[tuple[CountingRelay, CountingRelay]]:
    flight = len(FOLDERS) + 1  # and INBOX
    pair = (CountingRelay(source_dovecot, flight), CountingRelay(target_dovecot, flight))
    yield pair
    for relay in pair:
        relay.close()


def test_a_rerun_with_nothing_new_sends_one_pipelined_status_flight_per_server(
    tmp_path: Path,
    source_dovecot: DovecotServer,
    target_dovecot: DovecotServer,
    relays: tuple[CountingRelay, CountingRelay],
) -> None:
    for folder in FOLDERS:
        imapfill.create_folder(source_dovecot, "alice", folder)
    for index, folder in enumerate(["INBOX", *FOLDERS]):
        imapfill.append(source_dovecot, "alice", folder, message(f"m{index}"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    code, summary = lab.run()
    assert code == 0 and summary["totals"]["copied"] == len(FOLDERS) + 1, summary

    source_relay, target_relay = relays
    timeout = "timeout = 20"  # a client that waited for each STATUS answer would fail here, not hang
    write_plan(lab.root, source_relay, target_relay, source_extra=timeout, target_extra=timeout)
    code, summary = lab.run()

    assert code == 0, summary
    assert summary["totals"]["copied"] == 0
    for relay in relays:
        (connection,) = relay.connections  # one session per side for the one mailbox
        sent = Counter(connection.commands)
        assert sent["STATUS"] == len(FOLDERS) + 1, connection.commands
        # Nothing but login, the folder listing and the STATUS flight: no folder opened, no message read.
        assert set(sent) <= {
            "CAPABILITY",
            "AUTHENTICATE",
            "LOGIN",
            "NAMESPACE",
            "LIST",
            "STATUS",
            "LOGOUT",
        }, sent
        assert sent["LIST"] == 1, connection.commands


def test_a_delta_pass_logs_in_to_the_target_only_when_a_folder_has_something_to_do(
    tmp_path: Path, source_dovecot: DovecotServer, target_dovecot: DovecotServer
) -> None:
    # The cutover window's final pass runs over every mailbox of a wave while users wait: a mailbox
    # that received nothing costs the source's STATUS flight, not a target login too.
    for folder in FOLDERS:
        imapfill.create_folder(source_dovecot, "alice", folder)
        imapfill.append(source_dovecot, "alice", folder, message(f"first in {folder}"))
    lab = make_lab(tmp_path / "lab", source_dovecot, target_dovecot)
    code, summary = lab.run()
    assert code == 0 and summary["totals"]["copied"] == len(FOLDERS), summary
    before = dovecot_logins(target_dovecot)["alice"]

    code, summary = lab.run()
    assert code == 0 and summary["totals"]["copied"] == 0, summary
    assert dovecot_logins(target_dovecot)["alice"] == before  # nothing new: the target untouched

    imapfill.append(source_dovecot, "alice", FOLDERS[0], message("late"))
    code, summary = lab.run()
    assert code == 0 and summary["totals"]["copied"] == 1, summary
    assert dovecot_logins(target_dovecot)["alice"] == before + 1
    assert len(imapfill.folder_snapshot(target_dovecot, "alice")[FOLDERS[0]]) == 2  # the first pass's folder
