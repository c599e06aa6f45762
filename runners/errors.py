"""One error tree for every protocol the runners speak, and for the engine's own stops.

    MigrationError
    ├── PlanError                  a plan file is wrong (file, line, key)
    ├── SecretError                a secret reference can't be resolved (never shows the value)
    ├── StoreError                 the state store can't be opened, read or written (runners.state.errors)
    ├── WaveFault                  the first mailboxes all failed the same way: a fault of the whole wave,
    │                              the run stops (runners.engine.wave_faults)
    ├── RunInterrupted             the operator stopped the run (not a failure: the ledger holds the rest)
    │   └── LeaseLost              another runner took the mailbox over: write nothing more (runners.state.errors)
    ├── MailboxCancelled           a cancel request for one mailbox or its wave (not a failure either)
    ├── NotCaptured                a ``captured:`` mailbox whose password the proxy never captured, or it
    │                              expired: that mailbox fails alone (runners.connectors.captured)
    ├── Refused                    a window step's conditions don't hold and no operator overrode them
    │                              (runners.window.driver); WaveHeld: another operator holds the wave's lease
    └── ProtocolError              a server said no, or the connection broke
        ├── NoProgress             attempts in a row copied nothing: the mailbox is given up
        │                          (runners.engine.resilience)
        ├── ConnectError           TCP could not be set up (retryable)
        │   └── TlsError           TLS handshake refused, e.g. an untrusted certificate (not retryable)
        ├── ConnectionLost         the connection dropped or timed out mid-command
        │   ├── FetchConnectionLost  ... while the source was sending bodies (names the UIDs not delivered)
        │   └── LimitExceeded        we hung up: the server broke a size or time limit (not retryable)
        ├── AppendFailed           an append the target kept failing (retryable, not throttling), naming
        │                          the messages it carried (runners.engine.resilience)
        ├── AuthError              login refused
        ├── DnsQueryError          a DNS server did not answer a query (runners.switch.dns_query)
        └── CommandError           a command got NO/BAD; ``server_text`` is the server's own words
            ├── MailboxFatal       the target refuses the whole mailbox (over quota, no permission)
            └── DnsUpdateRefused   the primary refused a signed UPDATE, with its rcode
                                   (runners.switch.dns_update)

Every ProtocolError keeps ``server`` (host:port), ``operation`` (what we asked) and ``server_text``
(verbatim, never paraphrased) so that the failure drill-down can show exactly what happened. Verbatim
but safe: ``operation`` (it names folders), ``server_text`` and ``code`` pass
``runners.safe_text.safe`` here, once, so no known secret (a server echoing LOGIN) and no control
character (an escape sequence, a CR LF) reaches the store, a log, a report or a screen through an error.
Classes defined beside the code that raises them are named with their module; everything in the
tree derives from ``MigrationError``, which the command line turns into one line and exit 2. The
cockpit's own errors (``cockpit.errors.CockpitError``: a bad keymap) are not migration errors.

Whether a server's answer means "not now" or "never" is protocol knowledge: each adapter decides
and passes ``retryable`` (IMAP's response codes in ``runners.imap.codes``, POP3's in its source);
the engine only reads the flag.
"""

from __future__ import annotations

from runners.safe_text import safe, safe_or_none


class MigrationError(Exception):
    """Base of every error the runners raise on purpose."""


class PlanError(MigrationError):
    """A plan (or its mailbox CSV) is invalid; names file, line and key."""

    def __init__(self, path: str, line: int | None, key: str | None, message: str) -> None:
        self.path = path
        self.line = line
        self.key = key
        self.message = message
        where = path if line is None else f"{path}:{line}"
        what = f" [{key}]" if key else ""
        super().__init__(f"{where}:{what} {message}")


class SecretError(MigrationError):
    """A secret reference (env:, file:) could not be resolved. Never carries the secret."""


class RunInterrupted(MigrationError):
    """The operator stopped the run; everything copied so far is in the ledger."""


class MailboxCancelled(MigrationError):
    """A cancel request for this mailbox (or its wave): stop after the batch, the rest waits for a rerun."""


class ProtocolError(MigrationError):
    """A protocol-level failure with the server's own words."""

    #: Retrying the same operation later may succeed (drops, timeouts, INUSE, throttling).
    retryable: bool = False
    #: The server said "not now" for itself, not for what was asked (HTTP 429/503, EWS
    #: ErrorServerBusy): never evidence against one message (``runners.engine.resilience``).
    throttled: bool = False

    def __init__(
        self,
        server: str,
        operation: str,
        server_text: str = "",
        code: str | None = None,
        *,
        retryable: bool | None = None,
    ) -> None:
        self.server = safe(server)
        self.operation = safe(operation)
        self.server_text = safe(server_text)
        self.code = safe_or_none(code)
        if retryable is not None:  # the adapter's verdict; otherwise the class's
            self.retryable = retryable
        detail = f": {self.server_text}" if server_text else ""
        super().__init__(f"{self.server} {self.operation}{detail}")


class ConnectError(ProtocolError):
    retryable = True


class TlsError(ConnectError):
    """The TLS handshake failed (untrusted or mismatched certificate): retrying won't help."""

    retryable = False


class ConnectionLost(ProtocolError):
    retryable = True


class FetchConnectionLost(ConnectionLost):
    """The connection dropped while the source was sending message bodies.

    Some servers (Dovecot among them) disconnect when a message can't be read, so a drop here may
    be that message's fault: ``uids`` are the messages not yet delivered; ``single`` says only one
    was asked for, making it the culprit.
    """

    def __init__(self, lost: ConnectionLost, folder: str, uids: list[int], single: bool) -> None:
        super().__init__(lost.server, lost.operation, lost.server_text, lost.code)
        self.folder = folder
        self.uids = uids
        self.single = single


class LimitExceeded(ConnectionLost):
    """The server sent more than we accept (a literal over the listed size, an endless line or
    response, a command that never ends): we dropped the connection rather than our memory.

    Not retryable: the same server answers the same way next time. Inside a body FETCH it is the
    message's fault and the engine narrows down to it; elsewhere it fails the mailbox.
    """

    retryable = False


class AuthError(ProtocolError):
    """Login refused: final (wrong credentials or master-user setup), unless the adapter says the
    server is only unavailable for now (``retryable``)."""


class CommandError(ProtocolError):
    """A tagged NO or BAD (IMAP), -ERR (POP3) or an HTTP error status.

    An HTTP 429 (Too Many Requests) or 503 (Service Unavailable) is ``throttled``: the server's
    state, whatever was asked."""

    def __init__(
        self,
        server: str,
        operation: str,
        server_text: str = "",
        code: str | None = None,
        status: str = "NO",
        *,
        retryable: bool | None = None,
    ) -> None:
        super().__init__(server, operation, server_text, code, retryable=retryable)
        self.status = status
        self.throttled = status in ("429", "503")


class MailboxFatal(CommandError):
    """The target refuses the whole mailbox (over quota, no permission): stop copying into it."""
