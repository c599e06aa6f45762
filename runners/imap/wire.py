"""One IMAP connection: framing, tags, literals, pipelining, authentication.

Not thread-safe: one connection belongs to one thread at a time. Passwords are sent but never kept
in any attribute, log line or error: errors carry only the server's words and the operation name.
"""

from __future__ import annotations

import base64
import io
import os
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NoReturn

from runners.errors import CommandError, ConnectError, ConnectionLost, LimitExceeded, RunInterrupted, TlsError
from runners.imap import watchdog
from runners.imap.codes import auth_error, command_error
from runners.imap.parse import literal_at_end, needs_literal, quote, split_code

# ssl is imported by the first TLS connection (``_context``): a plain one (a server on loopback) never
# needs it, and it is a twentieth of what a run imports.
if TYPE_CHECKING:
    import ssl

_BUFSIZE = 256 * 1024
#: Bytes of an APPEND gathered before they are sent (see ``send_with_literals``).
_SEND_CHUNK = 256 * 1024
#: Buffers one ``sendmsg`` may carry: the system's IOV_MAX (1,024 on Linux; POSIX's floor, 16, if unknown).
_IOV_MAX = max(16, os.sysconf("SC_IOV_MAX")) if "SC_IOV_MAX" in os.sysconf_names else 16

# What a server may send before we hang up (each checked before anything is allocated for it).
#: One line of protocol text: a line that hasn't ended by then never will.
MAX_LINE_BYTES = 1 << 20
#: A literal that isn't a message body (a folder name, a header block, a greeting's text).
MAX_TEXT_LITERAL_BYTES = 1 << 20
#: The protocol text of one response, all its lines together (literals are held to their own limit).
MAX_RESPONSE_TEXT_BYTES = 4 << 20
#: Everything one command collects before its completion (``wait``): a metadata FETCH of a folder of a
#: million messages is about 120 MB.
MAX_COMMAND_BYTES = 160 << 20
#: One command from sending it to its completion, however steadily the server trickles bytes.
MAX_COMMAND_SECONDS = 3600.0


@dataclass(slots=True)
class Reply:
    """The tagged completion of a command plus the untagged responses it produced."""

    status: str  # OK | NO | BAD
    code: str | None
    code_args: str
    text: str  # verbatim, response code included
    untagged: list[list[bytes]] = field(default_factory=list)


class ImapConnection:
    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: str = "tls",
        timeout: float = 60.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.server = f"imap://{host}:{port}"
        self.capabilities: set[str] = set()
        self._tag = 0
        self._security = security
        self._timeout = timeout
        self._ssl_context = ssl_context
        self._sock: socket.socket | None = None
        self._reader: io.BufferedReader | None = None
        self._guard: watchdog.Guard | None = None
        #: The largest literal the current command may receive, and why (see ``expecting_literals``).
        self._literal_limit = MAX_TEXT_LITERAL_BYTES
        self._literal_why = "the limit for a literal that is not a message body"
        self.max_command_seconds = MAX_COMMAND_SECONDS
        #: Asked before each send of a command after its first (``sending_while``); raises to stop it.
        self._keep_sending: Callable[[], None] | None = None

    # -- connection -----------------------------------------------------------------------------

    def connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self._timeout)
        except OSError as exc:
            raise ConnectError(self.server, "connect", exc.strerror or str(exc)) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            if self._security == "tls":
                sock = self._context().wrap_socket(sock, server_hostname=self.host)
        except OSError as exc:  # ssl.SSLError is one
            sock.close()
            raise TlsError(self.server, "TLS handshake", str(exc)) from None
        self._attach(sock)
        greeting = self._readline()
        if greeting.startswith(b"* BYE"):
            raise ConnectError(self.server, "greeting", greeting.decode("utf-8", "replace").strip())
        code, args, _ = split_code(greeting[5:] if greeting.startswith(b"* OK ") else b"")
        if code == "CAPABILITY":
            self.capabilities = set(args.upper().split())
        else:
            self.refresh_capabilities()
        if self._security == "starttls":
            if "STARTTLS" not in self.capabilities:
                raise ConnectError(self.server, "STARTTLS", "server does not offer STARTTLS", retryable=False)
            self.check(b"STARTTLS", "STARTTLS")
            try:
                tls = self._context().wrap_socket(self._require_sock(), server_hostname=self.host)
            except OSError as exc:  # ssl.SSLError is one
                raise TlsError(self.server, "TLS handshake", str(exc)) from None
            self._attach(tls)
            self.refresh_capabilities()

    def _context(self) -> ssl.SSLContext:
        if self._ssl_context is not None:
            return self._ssl_context
        import ssl

        return ssl.create_default_context()

    def _attach(self, sock: socket.socket) -> None:
        if self._guard is not None:
            self._guard.release()
        self._guard = watchdog.guard(sock)
        self._sock = sock
        reader = sock.makefile("rb", buffering=_BUFSIZE)
        assert isinstance(reader, io.BufferedReader)
        self._reader = reader

    def _require_reader(self) -> io.BufferedReader:
        if self._reader is None:
            raise ConnectionLost(self.server, "read", "not connected")
        return self._reader

    def _require_sock(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionLost(self.server, "use", "not connected")
        return self._sock

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if self._guard is not None:
            self._guard.release()
        if sock is None:
            return
        try:
            sock.settimeout(2.0)
            self._tag += 1
            sock.sendall(b"Z%d LOGOUT\r\n" % self._tag)
        except OSError:
            pass
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def has(self, capability: str) -> bool:
        return capability in self.capabilities

    def refresh_capabilities(self) -> None:
        reply = self.check(b"CAPABILITY", "CAPABILITY")
        for parts in reply.untagged:
            if parts[0].startswith(b"* CAPABILITY "):
                self.capabilities = set(parts[0][13:].decode("ascii", "replace").upper().split())

    # -- reading -------------------------------------------------------------------------------

    def _readline(self) -> bytes:
        try:
            line = self._require_reader().readline(MAX_LINE_BYTES)
        except TimeoutError:
            raise ConnectionLost(self.server, "read", self._stalled("waiting for the server")) from None
        except (OSError, AttributeError) as exc:
            raise ConnectionLost(self.server, "read", str(exc)) from None
        if not line:
            raise ConnectionLost(self.server, "read", "the server closed the connection")
        return line

    def _stalled(self, doing: str) -> str:
        """A stalled connection (a NAT gateway that forgot it, an overloaded link) is only a timeout
        to us: say how long nothing moved, so a stall reads differently from a slow server's NO."""
        return f"timed out {doing}: nothing moved for {self._timeout:g} s"

    def read_response(self) -> list[bytes]:
        """One whole response: its text lines and literal payloads, alternating."""
        with self._time_limit():
            return self._read_response()

    def _read_response(self) -> list[bytes]:
        """``read_response`` inside a deadline the caller already holds (``responses``: one per
        command, not one per response of a FETCH of thousands of messages).

        The hot path of a copy (every body and every listed message comes through here): the reads
        are inlined: one call per response, not five."""
        reader = self._require_reader()
        parts: list[bytes] = []
        text_bytes = 0
        reading_literal = False
        try:
            line = reader.readline(MAX_LINE_BYTES)
            while True:
                if not line.endswith(b"\n"):
                    if not line:
                        raise ConnectionLost(self.server, "read", "the server closed the connection")
                    self._hang_up(f"sent a line longer than {MAX_LINE_BYTES} bytes (the limit for one line)")
                text_bytes += len(line)
                if text_bytes > MAX_RESPONSE_TEXT_BYTES:
                    self._hang_up(
                        f"sent a response of more than {MAX_RESPONSE_TEXT_BYTES} bytes of text (the limit for one response)"
                    )
                literal = literal_at_end(line)
                if literal is None:
                    parts.append(line)
                    return parts
                parts.append(line[: literal[0]])
                size = self._literal_size(literal[1])
                reading_literal = True
                data = reader.read(size)
                if len(data) != size:
                    raise ConnectionLost(self.server, "read", "the server closed the connection mid-literal")
                parts.append(data)
                reading_literal = False
                line = reader.readline(MAX_LINE_BYTES)
        except TimeoutError:
            doing = "reading a literal" if reading_literal else "waiting for the server"
            raise ConnectionLost(self.server, "read", self._stalled(doing)) from None
        except (OSError, AttributeError) as exc:  # AttributeError: the socket was torn down under us
            raise ConnectionLost(self.server, "read", str(exc)) from None

    # -- limits --------------------------------------------------------------------------------

    @contextmanager
    def expecting_literals(self, limit: int, why: str) -> Iterator[None]:
        """Within this block a literal may be up to ``limit`` bytes (message bodies: the listed size
        plus slack); ``why`` is said when a server announces more."""
        saved = self._literal_limit, self._literal_why
        self._literal_limit, self._literal_why = limit, why
        try:
            yield
        finally:
            self._literal_limit, self._literal_why = saved

    def _literal_size(self, digits: bytes) -> int:
        """The announced size, once it is known to fit (checked before a byte is allocated for it)."""
        size = int(digits) if len(digits) <= 18 else -1
        if size < 0 or size > self._literal_limit:
            shown = digits[:24].decode("ascii") + ("…" if len(digits) > 24 else "")
            self._hang_up(
                f"announced a literal of {shown} bytes, over {self._literal_why} ({self._literal_limit} bytes)"
            )
        return size

    def _hang_up(self, what: str) -> NoReturn:
        """Drop the connection (it is out of step now) and say which limit the server broke."""
        self._drop()
        raise LimitExceeded(self.server, "read", f"the server {what}; connection dropped")

    def _drop(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    @contextmanager
    def _time_limit(self) -> Iterator[None]:
        """Hold the reads inside to ``max_command_seconds`` in all (the outermost block's deadline counts)."""
        guard = self._guard
        if guard is None or guard.armed:
            yield
            return
        guard.arm(self.max_command_seconds)
        try:
            yield
        except ConnectionLost:
            if watchdog.aborted():
                raise RunInterrupted("the run was stopped at once: connections closed") from None
            if guard.fired:
                self._hang_up(
                    f"did not complete the command within {guard.seconds:g} s (the limit for one command)"
                )
            raise
        finally:
            guard.disarm()

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def sending_while(self, keep_sending: Callable[[], None]) -> Iterator[None]:
        """Commands with literals sent inside ask ``keep_sending`` right before each of their sends,
        the first included: the pieces of a large APPEND, the rest of what the kernel took only part
        of. When it raises, the command is cut short (or never starts) and the connection dropped,
        so the server discards what it got of it instead of saving it: a runner frozen before or in
        mid-APPEND, whose mailbox another runner took over meanwhile, would otherwise send it when
        it wakes (``runners.state.fence``). Asked at the send itself, not before the command is put
        together, so a freeze can fall only between the check and the system call."""
        saved, self._keep_sending = self._keep_sending, keep_sending
        try:
            yield
        finally:
            self._keep_sending = saved

    def _between_sends(self) -> None:
        """Before each send of a command: ``keep_sending`` may stop it (the connection is dropped)."""
        if self._keep_sending is None:
            return
        try:
            self._keep_sending()
        except BaseException:
            self._drop()
            raise

    def _send(self, data: bytes | memoryview) -> None:
        try:
            self._require_sock().sendall(data)
        except TimeoutError:
            raise ConnectionLost(self.server, "write", self._stalled("sending to the server")) from None
        except OSError as exc:
            raise ConnectionLost(self.server, "write", str(exc)) from None

    def next_tag(self) -> bytes:
        self._tag += 1
        return b"A%d" % self._tag

    def send_command(self, command: bytes) -> bytes:
        """Send a command without literals and return its tag (for pipelining)."""
        tag = self.next_tag()
        self._send(tag + b" " + command + b"\r\n")
        return tag

    def responses(self, tag: bytes) -> Iterator[list[bytes]]:
        """Yield untagged responses until ``tag`` completes; the last item is the tagged line."""
        prefix = tag + b" "
        with self._time_limit():
            while True:
                parts = self._read_response()
                yield parts
                if parts[0].startswith(prefix):
                    return
                if parts[0].startswith(b"* BYE"):
                    raise ConnectionLost(self.server, "read", parts[0].decode("utf-8", "replace").strip())

    def wait(self, tag: bytes, operation: str) -> Reply:
        untagged: list[list[bytes]] = []
        last: list[bytes] = []
        collected = 0
        for parts in self.responses(tag):
            if parts[0].startswith(tag + b" "):
                last = parts
            else:
                collected += len(parts[0]) if len(parts) == 1 else sum(map(len, parts))
                if collected > MAX_COMMAND_BYTES:
                    self._hang_up(
                        f"sent more than {MAX_COMMAND_BYTES} bytes in reply to {operation} (the limit for one command)"
                    )
                untagged.append(parts)
        return self._reply(tag, last[0], untagged)

    def _reply(self, tag: bytes, line: bytes, untagged: list[list[bytes]]) -> Reply:
        rest = line[len(tag) + 1 :].rstrip(b"\r\n")
        status, _, text = rest.partition(b" ")
        code, args, decoded = split_code(text)
        return Reply(status.decode("ascii", "replace").upper(), code, args, decoded, untagged)

    def command(self, command: bytes, operation: str) -> Reply:
        return self.wait(self.send_command(command), operation)

    def check(self, command: bytes, operation: str) -> Reply:
        """Run a command and raise CommandError (server's words kept) unless it says OK."""
        reply = self.command(command, operation)
        if reply.status != "OK":
            raise command_error(self.server, operation, reply.text, reply.code, reply.status)
        return reply

    def pipeline(self, commands: Sequence[tuple[bytes, str]]) -> list[Reply]:
        """Send every command at once, then read every reply: one round trip for many."""
        tags = [self.send_command(cmd) for cmd, _ in commands]
        return [self.wait(tag, op) for tag, (_, op) in zip(tags, commands, strict=True)]

    def astring(self, value: str) -> bytes:
        """A folder name or login argument, as a quoted string or a synchronizing literal."""
        raw = value.encode("utf-8")
        if not needs_literal(raw):
            return quote(raw)
        if self.has("LITERAL+"):
            return b"{%d+}\r\n" % len(raw) + raw
        raise CommandError(self.server, "encode", "value needs a literal but the server lacks LITERAL+")

    def send_with_literals(self, pieces: Sequence[bytes | tuple[bytes]], operation: str) -> Reply:
        """Send a command whose arguments include literals.

        ``pieces`` alternate protocol text (``bytes``) and literals (``(payload,)``). With LITERAL+
        the whole command streams without waiting; otherwise each literal waits for the server's
        ``+`` go-ahead, so a refusal arrives before the payload is sent.
        """
        tag = self.next_tag()
        plus = self.has("LITERAL+")
        head = tag + b" "
        # With LITERAL+ nothing waits for the server: pieces go out together, one send per
        # ``_SEND_CHUNK`` bytes instead of two per message (a MULTIAPPEND of small messages was
        # mostly system calls).
        out: list[bytes] = []
        queued = 0
        for piece in pieces:
            if isinstance(piece, tuple):
                payload = piece[0]
                # find, not ``in``: see runners.imap.parse._uid_in
                marker = b"~{" if payload.find(b"\0") >= 0 and self.has("BINARY") else b"{"
                if plus:
                    out += (head + marker + b"%d+}\r\n" % len(payload), payload)
                    queued += len(payload)
                    if queued >= _SEND_CHUNK:
                        self._send_all(out)
                        out, queued = [], 0
                else:
                    self._between_sends()
                    self._send(head + marker + b"%d}\r\n" % len(payload))
                    go = self.read_response()
                    if not go[0].startswith(b"+"):
                        untagged: list[list[bytes]] = []
                        while not go[0].startswith(tag + b" "):
                            untagged.append(go)
                            go = self.read_response()
                        return self._reply(tag, go[0], untagged)
                    self._send_all([payload])
                head = b""
            else:
                head += piece
        out.append(head + b"\r\n")
        self._send_all(out)
        return self.wait(tag, operation)

    def _send_all(self, pieces: list[bytes]) -> None:
        """Send ``pieces`` in order, never copied into one buffer first: gathered by the kernel (one
        ``sendmsg`` for many pieces), or over TLS, which has no ``sendmsg``, small pieces joined and a
        large body sent ``_SEND_CHUNK`` at a time. Every send asks ``_between_sends`` first."""
        sock = self._require_sock()
        if len(pieces) == 1 or _is_tls(sock):
            for chunk in _chunks(pieces):
                self._between_sends()
                self._send(chunk)
            return
        try:
            _send_gathered(sock, pieces, self._between_sends)
        except TimeoutError:
            raise ConnectionLost(self.server, "write", self._stalled("sending to the server")) from None
        except OSError as exc:
            raise ConnectionLost(self.server, "write", str(exc)) from None

    # -- authentication ------------------------------------------------------------------------

    def login(self, user: str, password: str) -> None:
        if "LOGINDISABLED" in self.capabilities:
            self.authenticate_plain(user, password, authzid="")
            return
        reply = self._auth_command([b"LOGIN ", self._arg(user), b" ", self._arg(password)], f"LOGIN {user}")
        self._finish_auth(reply, f"LOGIN {user}")

    def authenticate_plain(self, authcid: str, password: str, authzid: str) -> None:
        """SASL PLAIN; with ``authzid`` a master user logs in as that user (Dovecot, Cyrus)."""
        token = base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode())
        operation = f"AUTHENTICATE PLAIN {authzid or authcid}" + (f" (as {authcid})" if authzid else "")
        if "SASL-IR" in self.capabilities:
            reply = self.command(b"AUTHENTICATE PLAIN " + token, operation)
        else:
            tag = self.next_tag()
            self._send(tag + b" AUTHENTICATE PLAIN\r\n")
            go = self.read_response()
            if go[0].startswith(b"+"):
                self._send(token + b"\r\n")
                reply = self.wait(tag, operation)
            else:
                reply = self._reply(tag, go[0], [])
        self._finish_auth(reply, operation)

    def _arg(self, value: str) -> bytes | tuple[bytes]:
        raw = value.encode("utf-8")
        return (raw,) if needs_literal(raw) or b'"' in raw or b"\\" in raw else quote(raw)

    def _auth_command(self, pieces: list[bytes | tuple[bytes]], operation: str) -> Reply:
        return self.send_with_literals(pieces, operation)

    def _finish_auth(self, reply: Reply, operation: str) -> None:
        if reply.status != "OK":
            raise auth_error(self.server, operation, reply.text, reply.code)
        if reply.code == "CAPABILITY":
            self.capabilities = set(reply.code_args.upper().split())
        else:
            self.refresh_capabilities()


def _send_gathered(sock: socket.socket, pieces: Sequence[bytes], before_each: Callable[[], None]) -> None:
    """``sendall`` of many buffers at once: the kernel may take part of them, so go on from there,
    asking ``before_each`` right before each ``sendmsg``."""
    pending: list[bytes | memoryview] = list(pieces)
    done, count = 0, len(pending)
    while done < count:
        before_each()
        sent = sock.sendmsg(pending[done : done + _IOV_MAX])
        while done < count and sent >= len(pending[done]):
            sent -= len(pending[done])
            done += 1
        if sent:
            pending[done] = memoryview(pending[done])[sent:]


def _is_tls(sock: socket.socket) -> bool:
    # Without ssl imported (``_context`` does it) no socket can be an SSLSocket.
    tls = sys.modules.get("ssl")
    return tls is not None and isinstance(sock, tls.SSLSocket)


def _chunks(pieces: Sequence[bytes]) -> Iterator[bytes | memoryview]:
    """``pieces`` as sends of at most about ``_SEND_CHUNK`` bytes: small ones joined, large ones cut."""
    small: list[bytes] = []
    for piece in pieces:
        if len(piece) < _SEND_CHUNK:
            small.append(piece)
            continue
        if small:
            yield b"".join(small)
            small = []
        view = memoryview(piece)
        for start in range(0, len(piece), _SEND_CHUNK):
            yield view[start : start + _SEND_CHUNK]
    if small:
        yield small[0] if len(small) == 1 else b"".join(small)
