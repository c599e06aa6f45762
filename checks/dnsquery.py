"""Ask one DNS server one question, directly, with dnspython.

Two kinds of server: the *resolver* (recursion desired; what senders on the internet see) and an
*authoritative* server (no recursion, the AA flag required: only its answer carries the real TTL
and shows whether the servers of a zone agree). Every query has a timeout and one retry; no answer,
a refusal or a non-authoritative answer raises ``ProtocolError`` naming the server, so a dead
server turns a check into an error, never a hang and never a pass.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver
import dns.rrset

from runners.errors import ProtocolError

DEFAULT_PORT = 53
#: UDP loss happens on real networks: one retry before calling a server dead.
TRIES = 2


@dataclass(frozen=True, slots=True)
class Server:
    host: str  # an IP address
    port: int = DEFAULT_PORT

    @property
    def name(self) -> str:
        """The per-server slot name for ``CheckContext.server``."""
        return f"dns:{self.host}:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_server(text: str) -> Server:
    """``host``, ``host:port``, ``::1`` or ``[::1]:53`` (as the plan loader accepts them)."""
    host, port = text.strip(), DEFAULT_PORT
    if host.startswith("["):
        inside, _, rest = host[1:].partition("]")
        host, port = inside, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    elif host.count(":") == 1:
        host, _, digits = host.partition(":")
        port = int(digits)
    return Server(_address(host), port)


def system_resolver() -> Server:
    """The first nameserver of /etc/resolv.conf."""
    try:
        configured = dns.resolver.Resolver().nameservers
    except dns.resolver.NoResolverConfiguration as exc:
        raise ProtocolError("dns:system", "read /etc/resolv.conf", str(exc)) from None
    return Server(str(configured[0]))


def _address(host: str) -> str:
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        pass
    # A resolver given by name: the system resolves it (dnspython needs an address).
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise ProtocolError(f"dns:{host}", "resolve the server's address", str(exc)) from None
    return str(infos[0][4][0])


@dataclass(frozen=True, slots=True)
class Answer:
    """One server's reply to one question."""

    server: Server
    qname: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    rcode: dns.rcode.Rcode
    rrsets: tuple[dns.rrset.RRset, ...]  # the answer section, as received

    @property
    def nxdomain(self) -> bool:
        return self.rcode == dns.rcode.NXDOMAIN

    @property
    def own(self) -> dns.rrset.RRset | None:
        """The record set at the name asked for: a CNAME, or the type asked for."""
        return next((r for r in self.rrsets if r.name == self.qname), None)

    @property
    def alias(self) -> dns.rrset.RRset | None:
        """The CNAME at the name asked for, if the name is an alias."""
        own = self.own
        return own if own is not None and own.rdtype == dns.rdatatype.CNAME else None

    @property
    def rrset(self) -> dns.rrset.RRset | None:
        """The records of the type asked for, at the end of any CNAME chain in the answer."""
        name = self.qname
        for _ in range(len(self.rrsets) + 1):
            found = {r.rdtype: r for r in self.rrsets if r.name == name}
            if self.rdtype in found:
                return found[self.rdtype]
            cname = found.get(dns.rdatatype.CNAME)
            if cname is None or self.rdtype == dns.rdatatype.CNAME:
                return None
            name = cname[0].target
        return None

    @property
    def evidence(self) -> str:
        """What the server said, verbatim, prefixed by who said it."""
        if self.rrsets:
            return "\n".join(f"{self.server}: {line}" for r in self.rrsets for line in str(r).splitlines())
        what = "NXDOMAIN" if self.nxdomain else "no record (NOERROR)"
        return f"{self.server}: {self.qname} {self.rdtype.name}: {what}"


def query(server: Server, name: str, rdtype: str, *, timeout: float, authoritative: bool = False) -> Answer:
    """Ask ``server`` for ``name``/``rdtype``; UDP, TCP when truncated. Raises ``ProtocolError``."""
    qname = dns.name.from_text(name)
    kind = dns.rdatatype.from_text(rdtype)
    message = dns.message.make_query(qname, kind)
    if authoritative:
        message.flags &= ~dns.flags.RD  # ask for what the server holds, not what it could find
    operation = f"{rdtype} {qname}"
    for _ in range(TRIES):
        try:
            response, _tcp = dns.query.udp_with_fallback(
                message, server.host, timeout=timeout, port=server.port, ignore_unexpected=True
            )
            break
        except dns.exception.Timeout:
            continue
        except (OSError, dns.exception.DNSException) as exc:
            raise ProtocolError(server.name, operation, f"{type(exc).__name__}: {exc}") from None
    else:
        raise ProtocolError(server.name, operation, f"no answer within {timeout:g} s ({TRIES} tries)")
    rcode = response.rcode()
    if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        raise ProtocolError(server.name, operation, f"answered {dns.rcode.to_text(rcode)}")
    if authoritative and not response.flags & dns.flags.AA:
        raise ProtocolError(
            server.name, operation, "answer without the AA flag: the server is not authoritative (lame)"
        )
    return Answer(server, qname, kind, rcode, tuple(response.answer))
