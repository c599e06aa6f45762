"""Servers that misbehave on purpose: an IMAP and a POP3 server on loopback, each a plain socket
server that answers like a small honest one (INBOX and a few folders, a handful of messages, any
login) until the scenario says otherwise at one point of the session.

A scenario maps a point (``greeting``, ``login``, ``list``, ``status``, ``examine``, ``meta`` — the
metadata FETCH —, ``body`` — the first body FETCH —; POP3: ``greeting``, ``login``, ``list``,
``uidl``, ``retr``) to an :class:`Act`: bytes to send first, then what to do (answer normally, hang,
close, send an endless line, trickle a byte at a time). ``SCENARIOS`` names the ones the issue
describes; ``ESCAPES`` is the vocabulary of terminal escapes a server may put in folder names and
texts (for escaping tests and fuzzing). Nothing here imports the product.
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

#: Terminal escapes and control characters a hostile server sends in folder names and texts.
ESCAPES: dict[str, bytes] = {
    "title": b"\x1b]0;owned\x07",  # sets the terminal (and tmux pane) title
    "osc52": b"\x1b]52;c;cm0gLXJmIH4K\x07",  # puts "rm -rf ~" in the clipboard (tmux set-clipboard on)
    "clear": b"\x1b[2J\x1b[H",  # blanks the screen
    "color": b"\x1b[31;1m",
    "crlf": b"\r\n2026-01-01 00:00:00 INFO forged log line",
    "cr": b"\rover",
    "bell": b"\x07",
    "backspace": b"ab\x08\x08",
    "nul": b"a\x00b",
    "c1-csi": "\u009b2J".encode(),  # the 8-bit CSI, as UTF-8
    "del": b"x\x7fy",
}

#: Announced literal sizes: huge, larger than memory, larger than a C ssize_t.
HUGE_LITERALS = (b"999999999999", b"3000000000", b"99999999999999999999")


@dataclass(frozen=True, slots=True)
class Act:
    """What the server does at one point of the session instead of (or before) its normal answer.

    ``send`` goes first, with ``{tag}`` and ``{command}`` (the client's command line as received,
    password and all) filled in. ``then``: ``normal`` (answer as usual), ``hang`` (say nothing more),
    ``close`` (drop the connection), ``endless`` (one line that never ends), ``trickle`` (a byte
    every ``trickle_seconds``, forever), ``stop`` (the answer was ``send``: wait for the next command).
    """

    send: bytes = b""
    then: str = "normal"
    trickle_seconds: float = 0.5


@dataclass
class Scenario:
    acts: Mapping[str, Act] = field(default_factory=dict)
    #: Folders besides INBOX, as raw names (bytes: escapes welcome; sent as literals when needed).
    folders: tuple[bytes, ...] = (b"Sent",)
    #: The messages of every folder.
    messages: tuple[bytes, ...] = (
        b"Subject: one\r\n\r\nfirst\r\n",
        b"Subject: two\r\n\r\nsecond\r\n",
    )


def _escape_folders() -> tuple[bytes, ...]:
    return tuple(b"F " + name.encode() + b" " + value for name, value in ESCAPES.items() if name != "nul")


#: The issue's hostile servers, by name (IMAP unless the name starts with ``pop3-``).
SCENARIOS: dict[str, Scenario] = {
    **{
        f"login-literal-{size.decode()}": Scenario({"login": Act(b"* OK {" + size + b"}\r\n", "hang")})
        for size in HUGE_LITERALS
    },
    **{
        f"body-literal-{size.decode()}": Scenario(
            {"body": Act(b"* 1 FETCH (UID 1 BODY[] {" + size + b"}\r\n", "hang")}
        )
        for size in HUGE_LITERALS
    },
    "login-endless": Scenario({"login": Act(b"* OK ", "endless")}),
    "list-endless": Scenario({"list": Act(b'* LIST () "/" ', "endless")}),
    "meta-endless": Scenario({"meta": Act(b"* 1 FETCH (UID 1 FLAGS (", "endless")}),
    "body-trickle": Scenario({"body": Act(b"* 1 FETCH (UID 1 BODY[] {30}\r\n", "trickle")}),
    "login-echo": Scenario(
        {"login": Act(b"{tag} NO [AUTHENTICATIONFAILED] Authentication failed: {command}\r\n", "stop")}
    ),
    "escape-folders": Scenario(folders=_escape_folders()),
    "escape-errors": Scenario(
        {
            "examine": Act(
                b"{tag} NO [SERVERBUG] broken "
                + b" ".join(v for v in ESCAPES.values() if b"\r" not in v)
                + b"\r\n",
                "stop",
            )
        }
    ),
    "disconnect-greeting": Scenario({"greeting": Act(b"", "close")}),
    "disconnect-login": Scenario({"login": Act(b"", "close")}),
    "disconnect-body": Scenario({"body": Act(b"* 1 FETCH (UID 1 BODY[] {30}\r\nSubject", "close")}),
    "no-starttls": Scenario(),  # the capability list never offers STARTTLS
    "pop3-retr-endless": Scenario({"retr": Act(b"+OK here it comes\r\n", "endless")}),
    "pop3-retr-trickle": Scenario({"retr": Act(b"+OK here it comes\r\n", "trickle")}),
    "pop3-login-echo": Scenario({"login": Act(b"-ERR [AUTH] no such login: {command}\r\n", "stop")}),
    "pop3-list-endless": Scenario({"list": Act(b"+OK\r\n1 ", "endless")}),
    "pop3-no-stls": Scenario(),
}

_CHUNK = b"x" * 65536
_LITERAL = re.compile(rb"\{(\d+)(\+?)\}\r\n$")


class _Session:
    """One client connection: reads commands, hands each to the protocol's handler."""

    def __init__(self, sock: socket.socket, scenario: Scenario, reached: dict[str, threading.Event]) -> None:
        self.sock = sock
        self.scenario = scenario
        self.reached = reached
        self.reader = sock.makefile("rb")
        self.body_sent = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def act(self, point: str, tag: bytes = b"", command: bytes = b"") -> bool:
        """Play the scenario's act at ``point``; True when the normal answer should follow."""
        act = self.scenario.acts.get(point)
        if act is None:
            return True
        self.reached.setdefault(point, threading.Event()).set()
        self.send(act.send.replace(b"{tag}", tag).replace(b"{command}", command.rstrip(b"\r\n")))
        if act.then == "normal":
            return True
        if act.then == "stop":
            return False
        if act.then == "hang":
            while self.sock.recv(65536):  # until the client gives up
                pass
        elif act.then == "endless":
            while True:
                self.send(_CHUNK)
        elif act.then == "trickle":
            while True:
                time.sleep(act.trickle_seconds)
                self.send(b"x")
        raise ConnectionAbortedError  # "close", or the client hung up: end the session

    def line(self) -> bytes:
        line = self.reader.readline(1 << 20)
        if not line:
            raise ConnectionAbortedError
        return line


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        session = _Session(self.request, self.server.scenario, self.server.reached)
        try:
            self.server.protocol(session)
        except (ConnectionAbortedError, OSError):
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, scenario: Scenario, protocol: Callable[[_Session], None]) -> None:
        self.scenario = scenario
        self.protocol = protocol
        self.reached: dict[str, threading.Event] = {}
        super().__init__(("127.0.0.1", 0), _Handler)


# -- IMAP ---------------------------------------------------------------------------------------


def _astring(value: bytes) -> bytes:
    if all(0x20 <= b < 0x7F and b not in b'"\\' for b in value):
        return b'"' + value + b'"'
    return b"{%d}\r\n" % len(value) + value


def _read_command(s: _Session) -> bytes:
    """One command with its literals (``+`` go-ahead for synchronizing ones), as received."""
    data = s.line()
    while m := _LITERAL.search(data):
        if not m.group(2):
            s.send(b"+ go ahead\r\n")
        data += s.reader.read(int(m.group(1)))
        data += s.line()
    return data


def _imap(s: _Session) -> None:
    caps = b"IMAP4rev1 LITERAL+ SASL-IR AUTH=PLAIN NAMESPACE"
    if s.act("greeting"):
        s.send(b"* OK [CAPABILITY " + caps + b"] hostile lab server ready\r\n")
    folders = (b"INBOX", *s.scenario.folders)
    messages = s.scenario.messages
    while True:
        command = _read_command(s)
        words = command.split(b" ", 3)
        tag, verb = words[0], (words[1].upper().rstrip(b"\r\n") if len(words) > 1 else b"")
        if verb == b"UID" and len(words) > 2:
            verb = b"UID " + words[2].upper()
        if verb in (b"LOGIN", b"AUTHENTICATE"):
            if s.act("login", tag, command):
                s.send(tag + b" OK [CAPABILITY " + caps + b"] logged in\r\n")
        elif verb == b"CAPABILITY":
            s.send(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
        elif verb == b"NAMESPACE":
            s.send(b'* NAMESPACE (("" "/")) NIL NIL\r\n' + tag + b" OK done\r\n")
        elif verb == b"LIST":
            if s.act("list", tag, command):
                for name in folders:
                    s.send(b'* LIST () "/" ' + _astring(name) + b"\r\n")
                s.send(tag + b" OK done\r\n")
        elif verb == b"STATUS":
            if s.act("status", tag, command):
                name = command.split(b" ", 2)[2].rsplit(b" (", 1)[0]
                n = len(messages)
                s.send(b"* STATUS %s (MESSAGES %d UIDNEXT %d UIDVALIDITY 1)\r\n" % (name, n, n + 1))
                s.send(tag + b" OK done\r\n")
        elif verb in (b"EXAMINE", b"SELECT"):
            if s.act("examine", tag, command):
                n = len(messages)
                s.send(b"* %d EXISTS\r\n* OK [UIDVALIDITY 1] ok\r\n* OK [UIDNEXT %d] ok\r\n" % (n, n + 1))
                s.send(tag + b" OK [READ-ONLY] done\r\n")
        elif verb == b"UID FETCH":
            _imap_fetch(s, tag, command, messages)
        elif verb == b"LOGOUT":
            s.send(b"* BYE bye\r\n" + tag + b" OK done\r\n")
            return
        else:
            s.send(tag + b" OK done\r\n")


def _imap_fetch(s: _Session, tag: bytes, command: bytes, messages: tuple[bytes, ...]) -> None:
    if b"BODY" not in command.upper():
        if s.act("meta", tag, command):
            for uid, body in enumerate(messages, 1):
                s.send(
                    b'* %d FETCH (UID %d RFC822.SIZE %d FLAGS () INTERNALDATE "01-Jan-2026 00:00:00 +0000")\r\n'
                    % (uid, uid, len(body))
                )
            s.send(tag + b" OK done\r\n")
        return
    first = not s.body_sent
    s.body_sent = True
    if first and not s.act("body", tag, command):
        return
    uids = _uid_set(command.split(b" ")[3], len(messages))
    for uid in uids:
        body = messages[uid - 1]
        s.send(b"* %d FETCH (UID %d BODY[] {%d}\r\n" % (uid, uid, len(body)) + body + b")\r\n")
    s.send(tag + b" OK done\r\n")


def _uid_set(spec: bytes, highest: int) -> list[int]:
    out: list[int] = []
    for piece in spec.split(b","):
        lo, _, hi = piece.partition(b":")
        a = highest if lo == b"*" else int(lo)
        b = a if not hi else highest if hi == b"*" else int(hi)
        out += [u for u in range(min(a, b), max(a, b) + 1) if 1 <= u <= highest]
    return out


# -- POP3 ---------------------------------------------------------------------------------------


def _pop3(s: _Session) -> None:
    if s.act("greeting"):
        s.send(b"+OK hostile lab POP3 ready\r\n")
    messages = s.scenario.messages
    while True:
        command = s.line()
        verb = command.split(b" ", 1)[0].upper().rstrip(b"\r\n")
        if verb in (b"USER", b"AUTH"):
            s.send(b"+OK\r\n")
        elif verb == b"PASS":
            if s.act("login", b"", command):
                s.send(b"+OK logged in\r\n")
        elif verb == b"CAPA":
            s.send(b"+OK\r\nUIDL\r\nTOP\r\n.\r\n")
        elif verb == b"STAT":
            s.send(b"+OK %d %d\r\n" % (len(messages), sum(map(len, messages))))
        elif verb in (b"LIST", b"UIDL"):
            if s.act(verb.decode().lower(), b"", command):
                s.send(b"+OK\r\n")
                for n, body in enumerate(messages, 1):
                    s.send(b"%d %s\r\n" % (n, b"%d" % len(body) if verb == b"LIST" else b"uid-%d" % n))
                s.send(b".\r\n")
        elif verb in (b"RETR", b"TOP"):
            if verb == b"TOP" or s.act("retr", b"", command):
                number = int(command.split()[1])
                body = messages[number - 1]
                if verb == b"TOP":
                    body = body.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
                s.send(b"+OK\r\n" + body + b".\r\n")
        elif verb == b"QUIT":
            s.send(b"+OK bye\r\n")
            return
        elif verb == b"STLS":
            s.send(b"-ERR STLS not offered here\r\n")
        else:
            s.send(b"+OK\r\n")


@dataclass(frozen=True)
class Hostile:
    """A running hostile server: its port, and whether a session has reached a point of the scenario."""

    port: int
    _server: _Server

    def reached(self, point: str) -> threading.Event:
        """Set once a session played the scenario's act at ``point`` (a test waits on it, never sleeps)."""
        return self._server.reached.setdefault(point, threading.Event())


@contextmanager
def hostile_server(scenario: str | Scenario, protocol: str = "imap") -> Iterator[Hostile]:
    """Run a hostile server on 127.0.0.1 for the ``with`` block."""
    chosen = SCENARIOS[scenario] if isinstance(scenario, str) else scenario
    handler = {"imap": _imap, "pop3": _pop3}[protocol]
    server = _Server(chosen, handler)
    thread = threading.Thread(target=server.serve_forever, name=f"hostile-{protocol}", daemon=True)
    thread.start()
    try:
        yield Hostile(server.server_address[1], server)
    finally:
        server.shutdown()
        server.server_close()
