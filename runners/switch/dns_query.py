"""Direct, non-recursive questions to one authoritative server, and a zone's NS set as servers.

The switch never trusts a resolver's cache for "is the change live": it asks each authoritative
server itself with RD clear and takes only an authoritative answer (AA set). Anything else (a
timeout, REFUSED, SERVFAIL, an answer without AA) raises ``DnsQueryError`` with the server's rcode
or the socket's words, which the confirm loop reports as what that server serves instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.resolver

from runners.errors import ProtocolError


class DnsQueryError(ProtocolError):
    """An authoritative server gave no authoritative answer (rcode, no AA, timeout, socket error)."""

    retryable = True


@dataclass(frozen=True, slots=True)
class AuthServer:
    """One authoritative server: its address and port, and its NS name when it came from the NS set."""

    address: str
    port: int = 53
    name: str | None = None

    @property
    def endpoint(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"

    def __str__(self) -> str:
        return f"{self.name} ({self.endpoint})" if self.name else self.endpoint


def ask(
    server: AuthServer, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, timeout: float
) -> dns.message.Message:
    """The server's authoritative reply (NOERROR or NXDOMAIN) to ``name`` ``rdtype``, RD clear.

    UDP first, TCP when the reply is truncated. Raises ``DnsQueryError``.
    """
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    operation = f"query {name} {dns.rdatatype.to_text(rdtype)}"
    try:
        reply, _ = dns.query.udp_with_fallback(query, server.address, timeout=timeout, port=server.port)
    except dns.exception.Timeout:
        raise DnsQueryError(server.endpoint, operation, f"no answer within {timeout:g} s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise DnsQueryError(server.endpoint, operation, str(exc) or type(exc).__name__) from None
    rcode = reply.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise DnsQueryError(server.endpoint, operation, dns.rcode.to_text(rcode), dns.rcode.to_text(rcode))
    if not reply.flags & dns.flags.AA:
        text = f"{dns.rcode.to_text(rcode)} without the AA flag: not authoritative for {name}"
        raise DnsQueryError(server.endpoint, operation, text, "not-authoritative")
    return reply


def served(
    server: AuthServer, name: dns.name.Name, rdtype: dns.rdatatype.RdataType, timeout: float
) -> dns.rdataset.Rdataset | None:
    """The RRset the server serves at exactly ``name`` ``rdtype``; None when there is none."""
    reply = ask(server, name, rdtype, timeout)
    rrset = reply.get_rrset(reply.answer, name, dns.rdataclass.IN, rdtype)
    if rrset is None:
        return None
    return dns.rdataset.from_rdata_list(rrset.ttl, list(rrset))


def served_at(
    server: AuthServer, name: dns.name.Name, rdtypes: Iterable[dns.rdatatype.RdataType], timeout: float
) -> dict[dns.rdatatype.RdataType, dns.rdataset.Rdataset | None]:
    return {rdtype: served(server, name, rdtype, timeout) for rdtype in rdtypes}


def zone_servers(zone: dns.name.Name, resolver: dns.resolver.Resolver) -> tuple[AuthServer, ...]:
    """Every address of every name in the zone's NS set, as the resolver sees them.

    Raises ``DnsQueryError`` when the NS set can't be found, or a name in it has no address: a
    server the switch can't ask is a server it can't confirm on.
    """
    try:
        ns_names = sorted({str(r.target) for r in resolver.resolve(zone, "NS", search=False)})
    except dns.exception.DNSException as exc:
        raise DnsQueryError("resolver", f"NS {zone}", str(exc) or type(exc).__name__) from None
    out: list[AuthServer] = []
    for ns in ns_names:
        addresses: list[str] = []
        for kind in ("A", "AAAA"):
            try:
                addresses += [r.address for r in resolver.resolve(ns, kind, search=False)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                continue
            except dns.exception.DNSException as exc:
                raise DnsQueryError("resolver", f"{kind} {ns}", str(exc) or type(exc).__name__) from None
        if not addresses:
            raise DnsQueryError("resolver", f"A/AAAA {ns}", f"{ns} (NS of {zone}) has no address")
        out += [AuthServer(address, 53, ns) for address in addresses]
    return tuple(out)
