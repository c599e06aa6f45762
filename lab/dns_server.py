"""DNS for the lab: twisted.names' authority and server, over UDP and TCP on one loopback port.

Why twisted.names: a maintained DNS server on the same reactor as the other lab servers, with
zone data held as Python records. The one server plays both parts the DNS checks ask for: the
recursive resolver (``[dns] resolver``) and the zone's authoritative server
(``[dns] nameservers``); names outside the lab's zones are answered NXDOMAIN, never forwarded.

Changed from twisted.names: a negative answer for a name inside one of our zones (NXDOMAIN, or
no record of that type) carries the AA flag and the zone's SOA, as every authoritative server's
does (RFC 2308). twisted.names sets AA only when an answer record is there, and the checks take
an authoritative reply without AA for a lame server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from twisted.names import authority, dns, server

#: (owner name, type, TTL, value). Values: A "127.0.0.1"; MX "10 mx1.example."; TXT "text";
#: NS/CNAME "host.example.".
RecordSpec = tuple[str, str, int, str]


@dataclass(frozen=True, slots=True)
class Zone:
    origin: str
    serial: int
    records: tuple[RecordSpec, ...]
    soa_ttl: int = 3600


class ZoneAuthority(authority.FileAuthority):
    """A zone built from ``Zone`` data instead of a zone file."""

    def __init__(self, zone: Zone) -> None:
        self.origin = zone.origin.encode().lower()
        self.soa_record = dns.Record_SOA(
            mname=b"ns1." + self.origin,
            rname=b"hostmaster." + self.origin,
            serial=zone.serial,
            refresh=3600,
            retry=600,
            expire=604800,
            minimum=300,
            ttl=zone.soa_ttl,
        )
        super().__init__(zone)

    def loadFile(self, zone: Zone) -> None:
        records: dict[bytes, list[Any]] = {self.origin: [self.soa_record]}
        for name, kind, ttl, value in zone.records:
            records.setdefault(name.encode().lower(), []).append(_record(kind, ttl, value))
        # FileAuthority declares both as None on the class: loadFile is where they are set.
        self.soa = (self.origin, self.soa_record)  # type: ignore[assignment]
        self.records = records  # type: ignore[assignment]


def _record(kind: str, ttl: int, value: str) -> Any:
    if kind == "A":
        return dns.Record_A(value, ttl=ttl)
    if kind == "MX":
        preference, host = value.split()
        return dns.Record_MX(int(preference), host.rstrip(".").encode(), ttl=ttl)
    if kind == "TXT":
        return dns.Record_TXT(value.encode(), ttl=ttl)
    if kind == "NS":
        return dns.Record_NS(value.rstrip(".").encode(), ttl=ttl)
    if kind == "CNAME":
        return dns.Record_CNAME(value.rstrip(".").encode(), ttl=ttl)
    raise ValueError(f"record type {kind} is not used in the lab")


class LabDNSFactory(server.DNSServerFactory):
    def __init__(self, zones: Sequence[Zone]) -> None:
        self.zones = [ZoneAuthority(z) for z in zones]
        super().__init__(authorities=self.zones)

    def _responseFromMessage(
        self,
        message: dns.Message,
        rCode: int = dns.OK,
        answers: list[Any] | None = None,
        authority: list[Any] | None = None,
        additional: list[Any] | None = None,
    ) -> dns.Message:
        response: dns.Message = super()._responseFromMessage(message, rCode, answers, authority, additional)
        # An empty answer with our SOA in the authority section is authoritative too.
        if any(r.isAuthoritative() for r in (authority or [])):
            response.auth = True
        return response

    def gotResolverError(self, failure: Any, protocol: Any, message: dns.Message, address: Any) -> None:
        zone = self._zone_of(message)
        if zone is None or not failure.check(dns.AuthoritativeDomainError):
            super().gotResolverError(failure, protocol, message, address)
            return
        record = cast(dns.IEncodableRecord, zone.soa_record)  # a zope interface it provides
        soa = dns.RRHeader(zone.origin, dns.SOA, dns.IN, zone.soa_record.ttl, record, auth=True)
        response = self._responseFromMessage(message, rCode=dns.ENAME, authority=[soa])
        self.sendReply(protocol, response, address)

    def _zone_of(self, message: dns.Message) -> ZoneAuthority | None:
        if not message.queries:
            return None
        name = message.queries[0].name.name.lower()
        for zone in self.zones:
            if name == zone.origin or name.endswith(b"." + zone.origin):
                return zone
        return None
