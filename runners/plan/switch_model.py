"""The plan's ``[switch]`` section as typed values (parsed by ``runners.plan.switch_options``).

Apart from the parser so that ``runners.plan.model`` can hold it without importing the parser's
helpers, which import the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from runners.plan.secret import Secret


@dataclass(frozen=True, slots=True)
class MxRecord:
    preference: int
    host: str  # absolute, with the trailing dot


@dataclass(frozen=True, slots=True)
class DomainRecords:
    """``[switch.dns.domains."<domain>"]``: what the domain serves once its last wave is switched."""

    domain: str  # lower case, no trailing dot
    #: The zone holding the domain's records (the UPDATE's zone); default the domain itself.
    zone: str
    mx: tuple[MxRecord, ...]
    #: Target of the ``autodiscover.<domain>`` CNAME (where the target is Exchange); None: untouched.
    autodiscover: str | None = None


@dataclass(frozen=True, slots=True)
class TsigSettings:
    name: str  # absolute key name, as the server's config spells it
    algorithm: str
    secret: Secret  # base64, as in a BIND or Knot key statement


@dataclass(frozen=True, slots=True)
class HostPort:
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class SwitchDns:
    domains: tuple[DomainRecords, ...]
    #: The zone's primary for RFC 2136 updates; None: print the records, wait for them to appear.
    primary: HostPort | None = None
    #: None with a primary: an unsigned update, for a primary that authorizes by address.
    tsig: TsigSettings | None = None
    #: Servers to confirm on per zone; a zone not listed is confirmed on its NS set.
    nameservers: dict[str, tuple[HostPort, ...]] = field(default_factory=dict)
    ttl: int = 300
    #: Seconds one query or the UPDATE may take.
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class RoutingDirectory:
    """``[switch.directory]``: the LDAP attribute that routes a user's mail, and its two values."""

    url: str
    base: str
    attribute: str
    legacy_value: str
    target_value: str
    #: The attribute that holds a user's address, to find their entry.
    match: str = "mail"
    bind_dn: str | None = None
    bind_password: Secret | None = None
    starttls: bool = False
    tls_verify: bool = True
    ca_file: str | None = None
    timeout: float = 30.0


@dataclass(frozen=True, slots=True)
class SwitchSettings:
    dns: SwitchDns | None = None
    directory: RoutingDirectory | None = None
    #: How long the switch waits for every authoritative server to serve the new records.
    confirm_timeout: float = 900.0
    #: Seconds between two rounds of questions to the servers.
    confirm_interval: float = 2.0
