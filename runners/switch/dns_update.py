"""The switch's DNS change on the primary: read what it serves, send only what differs, signed.

``apply_records`` reads every desired RRset from the primary first (``pending_changes``); a record
already true is left alone, so a switch resumed after a crash sends nothing it already sent. What
differs goes in one RFC 2136 UPDATE per zone (``send_update``), TSIG-signed when the plan gives a
key, with *prerequisites* that the primary still serves exactly what was read: a change someone made
in between makes the server refuse the update (YXRRSET/NXRRSET) instead of having it overwritten.

A refusal raises ``DnsUpdateRefused`` with the server's own rcode (``REFUSED``, ``NOTAUTH``, and the
TSIG error it signed back: ``NOTAUTH (TSIG BADSIG)``), verbatim. The TSIG secret is read only to
sign, registered with ``runners.safe_text`` and never put in any message, error or repr (dnspython's
``Key`` repr shows it, so no ``Key`` outlives the send).

A CNAME can't share its name with other data, so replacing the legacy's autodiscover A record by a
CNAME reads A, AAAA and CNAME at the name, requires them as read, and deletes the whole name before
adding the CNAME.
"""

from __future__ import annotations

import binascii
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdataset
import dns.rdatatype
import dns.tsig
import dns.update

from runners.errors import CommandError, SecretError
from runners.plan.switch_model import SwitchDns, TsigSettings
from runners.switch.dns_query import AuthServer, DnsQueryError, served_at
from runners.switch.records import DesiredRRset, rdata_texts

#: Types a CNAME would replace at its name (the legacy's autodiscover is often an A record).
_CNAME_DISPLACES = (dns.rdatatype.CNAME, dns.rdatatype.A, dns.rdatatype.AAAA)
#: Rcodes that mean "a prerequisite failed": the zone changed since it was read.
_PREREQUISITE_RCODES = frozenset(
    {dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET}
)
_TSIG_ERRORS: dict[type[Exception], str] = {
    dns.tsig.PeerBadSignature: "BADSIG",
    dns.tsig.PeerBadKey: "BADKEY",
    dns.tsig.PeerBadTime: "BADTIME",
    dns.tsig.PeerBadTruncation: "BADTRUNC",
}

ServedAtName = Mapping[dns.rdatatype.RdataType, dns.rdataset.Rdataset | None]


class DnsUpdateRefused(CommandError):
    """The primary refused the UPDATE; ``server_text`` is its rcode (and TSIG error), verbatim."""

    def __init__(
        self, server: str, operation: str, server_text: str, code: str, *, prerequisite_failed: bool
    ) -> None:
        # A changed zone is worth reading again and retrying; a refused key or zone is not.
        super().__init__(server, operation, server_text, code, retryable=prerequisite_failed)
        self.prerequisite_failed = prerequisite_failed


@dataclass(frozen=True, slots=True)
class Primary:
    """Where updates go: the zone's primary, and the key that signs them (None: unsigned)."""

    server: AuthServer
    key: TsigSettings | None
    timeout: float = 10.0

    @classmethod
    def from_plan(cls, settings: SwitchDns) -> Primary | None:
        """The plan's primary, or None when it names none (the switch then prints the records)."""
        if settings.primary is None:
            return None
        return cls(AuthServer(settings.primary.host, settings.primary.port), settings.tsig, settings.timeout)


@dataclass(frozen=True, slots=True)
class Change:
    """One RRset that differs on the primary: what it must become and what was served before."""

    desired: DesiredRRset
    #: What the primary served at the name, by type, when read: the update's prerequisites, and
    #: what a rollback makes true again.
    before: ServedAtName

    @property
    def previous(self) -> tuple[str, ...]:
        """The records of the desired type served before, as text (empty: none)."""
        return rdata_texts(self.before.get(self.desired.rdtype))


@dataclass(frozen=True, slots=True)
class UpdateResult:
    primary: str
    #: The changes sent, in the order given; empty when everything was already true.
    changes: tuple[Change, ...]

    @property
    def sent(self) -> bool:
        return bool(self.changes)


def apply_records(primary: Primary, desired: Sequence[DesiredRRset]) -> UpdateResult:
    """Make ``desired`` true on the primary: read, then one UPDATE per zone for what differs.

    Raises ``DnsQueryError`` when the primary can't be read, ``DnsUpdateRefused`` when it refuses.
    """
    changes = pending_changes(primary.server, desired, primary.timeout)
    by_zone: dict[dns.name.Name, list[Change]] = {}
    for change in changes:
        by_zone.setdefault(change.desired.zone, []).append(change)
    for zone, zone_changes in by_zone.items():
        send_update(primary, zone, zone_changes)
    return UpdateResult(primary.server.endpoint, changes)


def pending_changes(
    server: AuthServer, desired: Iterable[DesiredRRset], timeout: float
) -> tuple[Change, ...]:
    """The desired RRsets ``server`` doesn't serve yet, each with what it serves at that name."""
    out: list[Change] = []
    for rrset in desired:
        before = served_at(server, rrset.name, _read_types(rrset), timeout)
        if not rrset.served_by(before[rrset.rdtype]) or _displaced(rrset, before):
            out.append(Change(rrset, before))
    return tuple(out)


def send_update(primary: Primary, zone: dns.name.Name, changes: Sequence[Change]) -> None:
    """One UPDATE for ``zone`` carrying ``changes``, with each one's prerequisites. Raises on refusal."""
    update = dns.update.UpdateMessage(zone)
    for change in changes:
        _add_change(update, change)
    if primary.key is not None:
        update.use_tsig(_tsig_key(primary.key))
    operation = f"UPDATE {zone} ({', '.join(c.desired.label for c in changes)})"
    wire = _exchange(primary, update, operation)
    try:
        reply = dns.message.from_wire(wire, keyring=update.keyring, request_mac=update.mac)
    except dns.exception.DNSException as exc:
        raise _refusal(primary, operation, _header_rcode(wire), exc) from None
    rcode = reply.rcode()
    if rcode != dns.rcode.NOERROR:
        text = dns.rcode.to_text(rcode)
        raise DnsUpdateRefused(
            primary.server.endpoint, operation, text, text, prerequisite_failed=rcode in _PREREQUISITE_RCODES
        )


def _read_types(rrset: DesiredRRset) -> tuple[dns.rdatatype.RdataType, ...]:
    return _CNAME_DISPLACES if rrset.rdtype == dns.rdatatype.CNAME else (rrset.rdtype,)


def _displaced(rrset: DesiredRRset, before: ServedAtName) -> bool:
    """Whether other data still sits at the name of a desired CNAME (a server would keep it)."""
    return any(before[t] is not None for t in before if t != rrset.rdtype)


def _add_change(update: dns.update.UpdateMessage, change: Change) -> None:
    name = change.desired.name
    for rdtype, rdataset in change.before.items():
        if rdataset is None:
            update.absent(name, rdtype)
        else:
            update.present(name, *rdataset)  # value-dependent, exactly these records (TTL 0: RFC 2136 2.4.2)
    if change.desired.rdtype == dns.rdatatype.CNAME:
        update.delete(name)  # every RRset at the name: a CNAME stands alone
    else:
        update.delete(name, change.desired.rdtype)
    update.add(name, change.desired.rdataset())


def _tsig_key(settings: TsigSettings) -> dns.tsig.Key:
    secret = settings.secret.reveal()  # registered with safe_text before anything can echo it
    try:
        return dns.tsig.Key(settings.name, secret, settings.algorithm)
    except (binascii.Error, ValueError):
        raise SecretError(
            f"the TSIG secret of key {settings.name} ({settings.secret.described}) is not base64"
        ) from None


def _exchange(primary: Primary, update: dns.update.UpdateMessage, operation: str) -> bytes:
    """Send the UPDATE over TCP and return the raw reply: parsing it is ours, so that a reply
    dnspython won't verify (a TSIG error) still yields the server's rcode."""
    server = primary.server
    wire = update.to_wire()
    try:
        with socket.create_connection((server.address, server.port), timeout=primary.timeout) as sock:
            sock.sendall(struct.pack("!H", len(wire)) + wire)
            (length,) = struct.unpack("!H", _read_exactly(sock, 2))
            return _read_exactly(sock, length)
    except TimeoutError:
        raise DnsQueryError(server.endpoint, operation, f"no answer within {primary.timeout:g} s") from None
    except OSError as exc:
        raise DnsQueryError(server.endpoint, operation, exc.strerror or str(exc)) from None


def _read_exactly(sock: socket.socket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionResetError("the server closed the connection before its reply was complete")
        data += chunk
    return data


def _header_rcode(wire: bytes) -> int | None:
    return wire[3] & 0x0F if len(wire) >= 12 else None


def _refusal(
    primary: Primary, operation: str, rcode: int | None, exc: dns.exception.DNSException
) -> CommandError:
    """The reply didn't parse or verify: keep its rcode, and the TSIG error the server signed back."""
    rcode_text = "no rcode" if rcode is None else dns.rcode.to_text(rcode)  # type: ignore[arg-type]
    tsig_error = next((name for kind, name in _TSIG_ERRORS.items() if isinstance(exc, kind)), None)
    if tsig_error is not None:
        text = f"{rcode_text} (TSIG {tsig_error})"
        return DnsUpdateRefused(
            primary.server.endpoint, operation, text, tsig_error, prerequisite_failed=False
        )
    if rcode == dns.rcode.NOERROR:
        # Applied, maybe, but unverifiable: the confirm loop will tell; a reply we can't trust is
        # still an error, never a success.
        detail = f"NOERROR, but the reply can't be verified: {exc or type(exc).__name__}"
    else:
        detail = f"{rcode_text} ({exc or type(exc).__name__})"
    return CommandError(primary.server.endpoint, operation, detail, rcode_text)
