"""A MULTIAPPEND's bytes arrive exactly as written, however little the socket takes at a time.

The wire gathers many bodies into one ``sendmsg``; the kernel may take any part of them. A tiny
server on loopback with socket buffers smaller than one send reads in small pieces, so the sends
are cut at arbitrary places.
"""

from __future__ import annotations

import random
import socket
import threading

from runners.imap.wire import ImapConnection

#: Socket buffers on both sides: below one send of the wire (256 KiB and more), above a TCP segment.
_BUFFER = 128 * 1024


def _serve_one(listener: socket.socket, expected_len: int, received: list[bytes]) -> None:
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ MULTIAPPEND] ready\r\n")
        data = bytearray()
        while len(data) < expected_len:
            chunk = conn.recv(3000)  # small reads: the client's sends stop part-way
            if not chunk:
                break
            data += chunk
        received.append(bytes(data))
        conn.sendall(b"A1 OK [APPENDUID 1 1:%d] APPEND completed\r\n" % 40)
        conn.recv(100)  # the LOGOUT


def test_multiappend_bytes_arrive_intact_through_partial_sends() -> None:
    rng = random.Random(7)
    sizes = [rng.choice((0, 1, 700, 5000, 70_000, 300_000)) for _ in range(40)]
    bodies = [bytes(rng.getrandbits(8) for _ in range(min(n, 64))) * (n // 64 or 1) for n in sizes]
    bodies = [b[:n] for b, n in zip(bodies, sizes, strict=True)]
    pieces: list[bytes | tuple[bytes]] = [b"APPEND INBOX"]
    expected = b"A1 APPEND INBOX"
    for body in bodies:
        pieces += [b" (\\Seen) ", (body,)]
        expected += b" (\\Seen) {%d+}\r\n" % len(body) + body
    expected += b"\r\n"

    with socket.create_server(("127.0.0.1", 0)) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _BUFFER)
        received: list[bytes] = []
        server = threading.Thread(target=_serve_one, args=(listener, len(expected), received), daemon=True)
        server.start()
        conn = ImapConnection("127.0.0.1", listener.getsockname()[1], security="plain", timeout=30)
        conn.connect()
        conn._require_sock().setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, _BUFFER)
        try:
            reply = conn.send_with_literals(pieces, "APPEND INBOX (40 messages)")
        finally:
            conn.close()
        server.join(timeout=30)

    assert reply.status == "OK"
    assert received == [expected]
