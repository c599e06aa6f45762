"""A small IMAP server on loopback that misbehaves on purpose, for the safe-text and secret tests.

It speaks just enough IMAP for the source connector to reach what is being tested:

* ``echo_login``: LOGIN is refused with the client's own command line in the text, password and all
  (``NO [AUTHENTICATIONFAILED] ... A2 LOGIN "user*admin" "<password>"``), as some servers do.
* otherwise LOGIN succeeds; LIST answers INBOX and ``folder`` (sent as a literal, so it may hold
  CR LF and escape sequences); STATUS, SELECT and EXAMINE answer ``NO`` with ``error_text``.
"""

from __future__ import annotations

import re
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager

#: Every escape a hostile server may try: a title (OSC 0), the clipboard (OSC 52), a blank screen, a forged line.
EVIL = "\x1b]0;owned\x07\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2J\r\nFORGED 2026-01-01 ERROR injected"

_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n$")


class HostileImap:
    def __init__(
        self, *, echo_login: bool = False, folder: str = "Evil" + EVIL, error_text: str = EVIL
    ) -> None:
        self.echo_login = echo_login
        self.folder = folder.encode()
        self.error_text = error_text.encode()
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def start(self) -> HostileImap:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.sock.close()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as reader:
            conn.sendall(b"* OK [CAPABILITY IMAP4rev1 LITERAL+] hostile ready\r\n")
            while True:
                line = self._command_line(conn, reader)
                if not line:
                    return
                tag, _, rest = line.rstrip(b"\r\n").partition(b" ")
                verb = rest.split(b" ", 1)[0].upper()
                if not self._answer(conn, tag, verb, line):
                    return

    @staticmethod
    def _command_line(conn: socket.socket, reader: object) -> bytes:
        """One command with its literals inlined (a synchronizing literal gets its ``+``)."""
        assert hasattr(reader, "readline") and hasattr(reader, "read")
        line: bytes = reader.readline()
        while (match := _LITERAL.search(line)) is not None:
            if not match.group(2):
                conn.sendall(b"+ go ahead\r\n")
            line += reader.read(int(match.group(1))) + reader.readline()
        return line

    def _answer(self, conn: socket.socket, tag: bytes, verb: bytes, line: bytes) -> bool:
        if verb == b"CAPABILITY":
            conn.sendall(b"* CAPABILITY IMAP4rev1 LITERAL+\r\n" + tag + b" OK done\r\n")
        elif verb == b"LOGIN" and self.echo_login:
            conn.sendall(
                tag + b" NO [AUTHENTICATIONFAILED] Authentication failed: " + line.rstrip(b"\r\n") + b"\r\n"
            )
        elif verb == b"LOGIN":
            conn.sendall(tag + b" OK [CAPABILITY IMAP4rev1 LITERAL+] logged in\r\n")
        elif verb == b"LIST":
            folder = b'* LIST () "/" {%d}\r\n%s\r\n' % (len(self.folder), self.folder)
            conn.sendall(b'* LIST () "/" INBOX\r\n' + folder + tag + b" OK listed\r\n")
        elif verb == b"LOGOUT":
            conn.sendall(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return False
        else:  # STATUS, SELECT, EXAMINE and the rest: refused in hostile words
            conn.sendall(tag + b" NO " + self.error_text.replace(b"\r\n", b" \r") + b"\r\n")
        return True


@contextmanager
def hostile_imap(**options: object) -> Iterator[HostileImap]:
    server = HostileImap(**options).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()
