"""One look at an SMTP hub: banner, EHLO, STARTTLS with a verified certificate, EHLO again, QUIT.

Everything the server says is kept verbatim in a transcript (``S: 250-SIZE 36700160``, our own
commands as ``C: EHLO ...``): the findings quote it as evidence. Nothing is ever sent past EHLO.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from dataclasses import dataclass, field
from typing import IO, Any

from checks.tlsprobe import (
    CertFaults,
    CertInfo,
    cert_info,
    client_context,
    examine,
    presented_certificate,
    verify_failure,
)


class _Recorder:
    """Wraps smtplib's reply file: every line the server sends goes into the transcript."""

    def __init__(self, file: IO[bytes], transcript: list[str]) -> None:
        self._file = file
        self._transcript = transcript

    def readline(self, size: int = -1) -> bytes:
        line = self._file.readline(size)
        if line:
            self._transcript.append("S: " + line.decode("utf-8", "replace").rstrip("\r\n"))
        return line

    def close(self) -> None:
        self._file.close()


class TranscriptSMTP(smtplib.SMTP):
    """smtplib with a transcript of both sides (commands as sent, replies as received)."""

    def __init__(self, *, timeout: float, local_hostname: str, tls_name: str | None = None) -> None:
        self.transcript: list[str] = []
        #: The name STARTTLS asks for and checks, when we connect to an address (curl's --resolve).
        self.tls_name = tls_name
        super().__init__(timeout=timeout, local_hostname=local_hostname)

    def connect(
        self, host: str = "localhost", port: int = 0, source_address: Any = None
    ) -> tuple[int, bytes]:
        # smtplib checks the certificate against the host given to __init__ only (we connect later).
        self._host = self.tls_name or host
        return super().connect(host, port, source_address)

    def putcmd(self, cmd: str, args: str = "") -> None:
        self.transcript.append(f"C: {cmd} {args}".rstrip())
        super().putcmd(cmd, args)

    def getreply(self) -> tuple[int, bytes]:
        # smtplib drops its reply file after STARTTLS and opens a new one: wrap each of them.
        if self.file is None and self.sock is not None:
            self.file = _Recorder(self.sock.makefile("rb"), self.transcript)
        return super().getreply()


@dataclass(slots=True)
class SmtpProbe:
    host: str  # the hub's name: what STARTTLS asks for and the certificate must carry
    port: int
    #: Where to connect (an address for the name, or the name itself).
    address: str = ""
    transcript: list[str] = field(default_factory=list)
    #: Why the conversation ended before STARTTLS could be judged (refused, timed out, no 220).
    failure: str | None = None
    starttls_offered: bool = False
    #: STARTTLS refused by the server or the handshake failed (not for the certificate), in the
    #: server's or OpenSSL's words.
    tls_error: str | None = None
    #: The verified certificate; on a failed handshake what the server presented.
    cert: CertInfo | None = None
    presented: CertInfo | str | None = None
    #: The certificate failed verification: each of its faults (trust, name, expiry).
    cert_faults: CertFaults | None = None
    #: EHLO keywords (lower-case) from the last EHLO: after STARTTLS when that succeeded.
    features: dict[str, str] = field(default_factory=dict)


def probe_smtp(
    host: str, port: int, *, timeout: float, ca_file: str | None, address: str | None = None
) -> SmtpProbe:
    """Talk to ``host`` (connecting to ``address`` when given, with ``host`` as the TLS name)."""
    out = SmtpProbe(host, port, address or host)
    smtp = TranscriptSMTP(timeout=timeout, local_hostname=_helo_name(), tls_name=host)
    out.transcript = smtp.transcript
    try:
        _converse(smtp, out, ca_file, timeout)
        if out.failure is None and out.tls_error is None and out.cert_faults is None:
            smtp.quit()  # polite, and its 221 completes the transcript
    except OSError:
        pass  # what mattered is already recorded; a failing QUIT changes nothing
    finally:
        smtp.close()
    return out


def _converse(smtp: TranscriptSMTP, out: SmtpProbe, ca_file: str | None, timeout: float) -> None:
    try:
        code, _ = smtp.connect(out.address, out.port)
    except OSError as exc:
        out.failure = _socket_failure(exc, timeout, "waiting for the greeting")
        return
    try:
        if code != 220:
            out.failure = f"the greeting is {code}, not 220: the hub refuses service"
            return
        code, _ = smtp.ehlo()
        if code != 250:
            out.failure = f"EHLO answered {code}"
            return
        out.features = dict(smtp.esmtp_features)
        out.starttls_offered = smtp.has_extn("starttls")
        if not out.starttls_offered:
            return
        try:
            smtp.starttls(context=client_context(ca_file))
        except smtplib.SMTPResponseException as exc:
            words = (
                exc.smtp_error
                if isinstance(exc.smtp_error, str)
                else exc.smtp_error.decode("utf-8", "replace")
            )
            out.tls_error = f"STARTTLS answered {exc.smtp_code} {words}"
            return
        except ssl.SSLCertVerificationError:
            out.cert_faults = examine(lambda ctx: _starttls_socket(out, ctx, timeout), ca_file)
            return
        except ssl.SSLError as exc:
            out.tls_error = verify_failure(exc)
            out.presented = presented_certificate(lambda ctx: _starttls_socket(out, ctx, timeout))
            return
        sock = smtp.sock
        peer = sock.getpeercert() if isinstance(sock, ssl.SSLSocket) else None
        out.cert = cert_info(peer) if peer else None
        code, _ = smtp.ehlo()
        if code == 250:
            out.features = dict(smtp.esmtp_features)
    except OSError as exc:  # SMTPServerDisconnected and timeouts mid-conversation
        out.failure = _socket_failure(exc, timeout, "waiting for the server")


def _starttls_socket(probe: SmtpProbe, context: ssl.SSLContext, timeout: float) -> ssl.SSLSocket:
    """A fresh conversation up to a finished STARTTLS handshake, for looking at the certificate."""
    smtp = TranscriptSMTP(timeout=timeout, local_hostname=_helo_name(), tls_name=probe.host)
    try:
        smtp.connect(probe.address, probe.port)
        smtp.ehlo()
        smtp.starttls(context=context)
    except BaseException:
        smtp.close()
        raise
    sock: Any = smtp.sock
    if not isinstance(sock, ssl.SSLSocket):
        smtp.close()
        raise ValueError("STARTTLS left no TLS socket")
    return sock


def _socket_failure(exc: OSError, timeout: float, doing: str) -> str:
    # smtplib turns a read timeout into SMTPServerDisconnected("... timed out"); the cause tells.
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return f"no answer within {timeout:.0f} s while {doing}"
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return f"the server closed the connection: {exc}"
    return exc.strerror or str(exc) or type(exc).__name__


def _helo_name() -> str:
    # The local host name as configured; socket.getfqdn() could wait on DNS.
    return socket.gethostname() or "localhost"


def parse_hub(value: str, default_port: int = 25) -> tuple[str, int]:
    """``host``, ``host:port``, ``::1`` or ``[::1]:25`` (as the plan loader accepts them)."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, default_port
