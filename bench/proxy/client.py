"""The bench's mail clients: blocking sockets, one short dialogue per protocol, no library in the way.

Every figure the bench prints is taken here, on the client's side of a peer (a proxy or the backends
themselves): login latency, sessions per second, transfer rates, idle sessions held open, the time a
peer takes to answer for a backend that is down.
"""

from __future__ import annotations

import base64
import multiprocessing
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

HOST = "127.0.0.1"
TIMEOUT = 15.0


class DialogueError(RuntimeError):
    """The peer answered something else than the dialogue expects (its words are in the message)."""


class Conn:
    """One TCP connection with a line reader."""

    __slots__ = ("buf", "sock")

    def __init__(self, port: int, timeout: float = TIMEOUT) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def line(self) -> bytes:
        while (end := self.buf.find(b"\r\n")) < 0:
            data = self.sock.recv(65536)
            if not data:
                raise DialogueError(f"connection closed; had {self.buf[:80]!r}")
            self.buf += data
        line, self.buf = self.buf[:end], self.buf[end + 2 :]
        return line

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def close(self) -> None:
        self.sock.close()


# --- the dialogues ------------------------------------------------------------------------------


def imap_login(conn: Conn, user: str, password: str) -> bytes:
    """The greeting, then LOGIN; the tagged answer (``a OK ...`` on success)."""
    greeting = conn.line()
    if not greeting.startswith(b"* OK"):
        raise DialogueError(f"greeting {greeting[:80]!r}")
    conn.send(f"a LOGIN {user} {password}\r\n".encode())
    while not (line := conn.line()).startswith(b"a "):
        pass
    return line


def imap_logout(conn: Conn) -> None:
    conn.send(b"z LOGOUT\r\n")
    try:
        while not conn.line().startswith(b"z "):
            pass
    except (DialogueError, OSError):
        pass
    conn.close()


def pop3_login(conn: Conn, user: str, password: str) -> bytes:
    greeting = conn.line()
    if not greeting.startswith(b"+OK"):
        raise DialogueError(f"greeting {greeting[:80]!r}")
    conn.send(f"USER {user}\r\n".encode())
    answer = conn.line()
    if not answer.startswith(b"+OK"):
        return answer
    conn.send(f"PASS {password}\r\n".encode())
    return conn.line()


def pop3_logout(conn: Conn) -> None:
    conn.send(b"QUIT\r\n")
    try:
        conn.line()
    except (DialogueError, OSError):
        pass
    conn.close()


def _smtp_reply(conn: Conn) -> bytes:
    while (line := conn.line())[3:4] == b"-":
        pass
    return line


def smtp_login(conn: Conn, user: str, password: str) -> bytes:
    greeting = _smtp_reply(conn)
    if not greeting.startswith(b"220"):
        raise DialogueError(f"greeting {greeting[:80]!r}")
    conn.send(b"EHLO bench.example\r\n")
    if not (ehlo := _smtp_reply(conn)).startswith(b"250"):
        raise DialogueError(f"EHLO answered {ehlo[:80]!r}")
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    conn.send(f"AUTH PLAIN {token}\r\n".encode())
    return _smtp_reply(conn)


def smtp_logout(conn: Conn) -> None:
    conn.send(b"QUIT\r\n")
    try:
        _smtp_reply(conn)
    except (DialogueError, OSError):
        pass
    conn.close()


@dataclass(frozen=True, slots=True)
class Dialogue:
    login: Callable[[Conn, str, str], bytes]
    logout: Callable[[Conn], None]
    ok: bytes  # how an accepted login's answer starts


DIALOGUES = {
    "imap": Dialogue(imap_login, imap_logout, b"a OK"),
    "pop3": Dialogue(pop3_login, pop3_logout, b"+OK"),
    "submission": Dialogue(smtp_login, smtp_logout, b"235"),
}


@dataclass(frozen=True, slots=True)
class Route:
    """Where a client connects for a user: the peer's port, or (direct) the user's own backend."""

    legacy: int
    target: int

    def port(self, user: str) -> int:
        return self.target if user_index(user) % 2 else self.legacy


def user_index(user: str) -> int:
    return int(user[1:]) if user[1:].isdigit() else 0


def password_of(user: str) -> str:
    return f"pw-{user}"


def one_session(dialogue: Dialogue, route: Route, user: str) -> float:
    """Connect, log in, log out; the seconds from connect to the login's answer."""
    started = time.perf_counter()
    conn = Conn(route.port(user))
    try:
        answer = dialogue.login(conn, user, password_of(user))
        took = time.perf_counter() - started
        if not answer.startswith(dialogue.ok):
            raise DialogueError(f"login of {user} answered {answer[:100]!r}")
        dialogue.logout(conn)
        return took
    finally:
        conn.close()


def login_latencies(dialogue: Dialogue, route: Route, users: list[str], count: int) -> list[float]:
    """``count`` sessions one after the other, each user in turn."""
    return [one_session(dialogue, route, users[i % len(users)]) for i in range(count)]


# --- sessions per second ----------------------------------------------------------------------------


def _sessions_worker(
    dialogue: str, route: Route, users: list[str], threads: int, seconds: float, out: multiprocessing.Queue
) -> None:  # type: ignore[type-arg]
    deadline = time.perf_counter() + seconds
    counts = [0] * threads
    errors: list[str] = []

    def loop(slot: int) -> None:
        n = slot
        while time.perf_counter() < deadline:
            try:
                one_session(DIALOGUES[dialogue], route, users[n % len(users)])
                counts[slot] += 1
            except (OSError, DialogueError) as exc:
                errors.append(str(exc)[:160])
                time.sleep(0.01)
            n += threads

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put((sum(counts), errors[:5], len(errors)))


def sessions_per_second(
    dialogue: str, route: Route, users: list[str], clients: int, seconds: float, processes: int = 2
) -> tuple[int, float, list[str]]:
    """``clients`` concurrent clients (threads across ``processes`` processes) opening sessions for
    ``seconds``: (sessions, wall seconds, the first errors)."""
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    per = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    started = time.perf_counter()
    procs = [
        ctx.Process(target=_sessions_worker, args=(dialogue, route, users, n, seconds, out)) for n in per if n
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    wall = time.perf_counter() - started
    errors = [e for _, errs, _ in results for e in errs]
    failed = sum(n for _, _, n in results)
    if failed:
        errors.insert(0, f"{failed} sessions failed")
    return sum(n for n, _, _ in results), wall, errors


# --- transfers ----------------------------------------------------------------------------------


def imap_fetch(route: Route, user: str, rounds: int) -> tuple[int, float]:
    """``FETCH 1:* BODY.PEEK[]`` of the user's INBOX ``rounds`` times: (bytes received, seconds)."""
    conn = Conn(route.port(user), timeout=120)
    answer = imap_login(conn, user, password_of(user))
    if not answer.startswith(b"a OK"):
        raise DialogueError(f"login answered {answer[:100]!r}")
    conn.send(b"s SELECT INBOX\r\n")
    while not conn.line().startswith(b"s "):
        pass
    buf = bytearray(4 * 1024 * 1024)
    view = memoryview(buf)
    total = 0
    started = time.perf_counter()
    for n in range(rounds):
        tag = f"f{n}".encode()
        conn.send(tag + b" FETCH 1:* BODY.PEEK[]\r\n")
        tail = b""
        done = b"\r\n" + tag + b" OK"
        while True:
            got = conn.sock.recv_into(view)
            if not got:
                raise DialogueError("connection closed during FETCH")
            total += got
            tail = (tail + bytes(view[max(0, got - 256) : got]))[-256:]
            if done in tail and tail.endswith(b"\r\n"):
                break
    took = time.perf_counter() - started
    imap_logout(conn)
    return total, took


def pop3_retr(route: Route, user: str, messages: int, rounds: int) -> tuple[int, float]:
    """``RETR`` of every message, ``rounds`` times: (bytes received, seconds)."""
    conn = Conn(route.port(user), timeout=120)
    answer = pop3_login(conn, user, password_of(user))
    if not answer.startswith(b"+OK"):
        raise DialogueError(f"login answered {answer[:100]!r}")
    buf = bytearray(4 * 1024 * 1024)
    view = memoryview(buf)
    total = 0
    started = time.perf_counter()
    for _ in range(rounds):
        for number in range(1, messages + 1):
            conn.send(f"RETR {number}\r\n".encode())
            tail = b""
            while True:
                got = conn.sock.recv_into(view)
                if not got:
                    raise DialogueError("connection closed during RETR")
                total += got
                tail = (tail + bytes(view[max(0, got - 8) : got]))[-8:]
                if tail.endswith(b"\r\n.\r\n"):
                    break
    took = time.perf_counter() - started
    pop3_logout(conn)
    return total, took


# --- idle sessions and a backend that is down ------------------------------------------------------


def open_idle(
    dialogue: Dialogue, route: Route, users: list[str], count: int, parallel: int = 50
) -> list[Conn]:
    """``count`` logged-in sessions left open (opened ``parallel`` at a time)."""

    def one(i: int) -> Conn:
        user = users[i % len(users)]
        conn = Conn(route.port(user), timeout=60)
        answer = dialogue.login(conn, user, password_of(user))
        if not answer.startswith(dialogue.ok):
            conn.close()
            raise DialogueError(f"login of {user} answered {answer[:100]!r}")
        return conn

    with ThreadPoolExecutor(parallel) as pool:
        return list(pool.map(one, range(count)))


def answer_when_down(dialogue: Dialogue, port: int, user: str, timeout: float = 10.0) -> tuple[float, str]:
    """Seconds from connecting to the peer's answer for a user whose backend is down, and the answer."""
    started = time.perf_counter()
    try:
        conn = Conn(port, timeout=timeout)
    except OSError as exc:
        return time.perf_counter() - started, f"connect: {exc.strerror or exc}"
    try:
        answer = dialogue.login(conn, user, password_of(user))
        return time.perf_counter() - started, answer.decode(errors="replace")[:70]
    except (OSError, DialogueError) as exc:
        return time.perf_counter() - started, f"{type(exc).__name__}: {exc}"[:70]
    finally:
        conn.close()
