"""Where to connect for an endpoint or hub name, as curl's ``--resolve`` lets an operator choose.

Before the cutover the new names often don't resolve publicly yet. The certificate must still name
the endpoint, so the name stays the TLS name (SNI and matching) while the connection goes to:

1. the address ``[capacity] addresses`` gives for the name, else
2. the name's A (then AAAA) record at ``[dns] resolver`` when the plan sets one, else
3. whatever the system resolver says (the connection is made by name).
"""

from __future__ import annotations

from dataclasses import dataclass

from checks.context import CheckContext
from checks.families.dns_common import is_ip_literal, resolve
from runners.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Target:
    #: The name: what TLS asks for and the certificate must carry.
    name: str
    #: Where to connect: an address, or the name itself for the system's resolver.
    address: str
    #: How the address was chosen, for the evidence ("" when the name is an address).
    how: str = ""

    def describe(self) -> str:
        return f"connected to {self.address} for {self.name} ({self.how})" if self.how else ""


def connect_target(ctx: CheckContext, name: str) -> Target:
    if is_ip_literal(name):
        return Target(name, name.strip("[]"))
    wanted = name.lower().rstrip(".")
    given = ctx.plan.readiness.capacity.addresses.get(wanted)
    if given is not None:
        return Target(name, given, "[capacity] addresses")
    dns = ctx.plan.readiness.dns
    if dns is not None and dns.resolver:
        asked: list[str] = []
        for rdtype in ("A", "AAAA"):
            try:
                answer = resolve(ctx, wanted, rdtype)
            except ProtocolError as exc:
                asked.append(str(exc))
                break
            if answer.rrset:
                return Target(name, answer.rrset[0].to_text(), f"{rdtype} at [dns] resolver {dns.resolver}")
            asked.append(f"no {rdtype}")
        return Target(name, name, f"system resolver; [dns] resolver {dns.resolver}: {', '.join(asked)}")
    return Target(name, name)
