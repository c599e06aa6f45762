"""The RRsets a domain must serve after the switch, and how they read in a zone file.

A desired RRset is compared with what a server serves by its records only (``dns.rdataset``
equality: same type, same set of rdata, names compared case-insensitively); the TTL is what an
update writes, not part of "already true", so that a TTL an operator tuned by hand doesn't make a
resumed switch send a change.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype

from runners.plan.switch_model import DomainRecords


@dataclass(frozen=True, slots=True)
class DesiredRRset:
    """One RRset the switch makes true: ``name`` ``rdtype`` with exactly ``rdatas``, in ``zone``."""

    zone: dns.name.Name
    name: dns.name.Name
    rdtype: dns.rdatatype.RdataType
    rdatas: tuple[dns.rdata.Rdata, ...]
    ttl: int

    @property
    def label(self) -> str:
        """``example.com. MX``: how messages name this RRset."""
        return f"{self.name} {dns.rdatatype.to_text(self.rdtype)}"

    def rdataset(self) -> dns.rdataset.Rdataset:
        return dns.rdataset.from_rdata_list(self.ttl, list(self.rdatas))

    def served_by(self, served: dns.rdataset.Rdataset | None) -> bool:
        """Whether ``served`` (what a server answers for this name and type) is this RRset."""
        return served is not None and served == self.rdataset()

    def zone_lines(self) -> list[str]:
        """The records as zone-file lines an operator can paste (absolute names, class IN)."""
        return zone_lines(self.name, self.rdataset())


def zone_lines(name: dns.name.Name, rdataset: dns.rdataset.Rdataset) -> list[str]:
    kind = dns.rdatatype.to_text(rdataset.rdtype)
    return sorted(f"{name} {rdataset.ttl} IN {kind} {rdata.to_text()}" for rdata in rdataset)


def rdata_texts(rdataset: dns.rdataset.Rdataset | None) -> tuple[str, ...]:
    """The records of ``rdataset`` as text, sorted; empty for none."""
    return () if rdataset is None else tuple(sorted(r.to_text() for r in rdataset))


def records_for(domains: Iterable[DomainRecords], ttl: int) -> tuple[DesiredRRset, ...]:
    """The desired RRsets of the plan's domains: each domain's MX set, and its autodiscover CNAME."""
    out: list[DesiredRRset] = []
    for domain in domains:
        zone = dns.name.from_text(domain.zone)
        apex = dns.name.from_text(domain.domain)
        if domain.mx:
            mx = tuple(_rdata(dns.rdatatype.MX, f"{m.preference} {m.host}") for m in domain.mx)
            out.append(DesiredRRset(zone, apex, dns.rdatatype.MX, mx, ttl))
        if domain.autodiscover is not None:
            name = dns.name.from_text("autodiscover", origin=apex)
            cname = (_rdata(dns.rdatatype.CNAME, domain.autodiscover),)
            out.append(DesiredRRset(zone, name, dns.rdatatype.CNAME, cname, ttl))
    return tuple(out)


def _rdata(rdtype: dns.rdatatype.RdataType, text: str) -> dns.rdata.Rdata:
    # Absolute names, kept absolute: a relative name would be completed with the zone on the wire.
    return dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=dns.name.root, relativize=False)
