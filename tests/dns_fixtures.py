"""The DNS lab: two authoritative NSD servers that disagree about one zone, an MTA-STS policy host,
and plans pointing the DNS checks at them.

Zones (every one on both servers, NS ns1/ns2 = primary/secondary on port 53):

- ``legacy.test``: the hosted domain before cleanup. MX TTL 86400 and autodiscover CNAME TTL 3600;
  an MX host that is a CNAME (``relay``); SPF needing 12 lookups through chained includes; no
  DMARC; an enforce MTA-STS policy that lists only the legacy MX. The secondary serves an older
  serial with an extra ``MX 20 mx2.legacy.test``.
- ``good.test``: everything right for the pre-cutover phase (legacy MX, low TTLs, SPF with the
  target's include, DMARC reject, enforce policy listing legacy and target MX, autodiscover CNAME).
- ``moved.test``: everything right after the cutover (MX at the target, no MTA-STS).
- ``broken.test``: MX at an IP literal and at a host without address; SPF with 3 void lookups;
  DMARC without p=; a testing-mode policy that lists no current MX; no autodiscover.
- ``null.test``: null MX only, no SPF, no DMARC.
- ``target.test``: the target platform's hosts (its MX hosts, autodiscover, SPF include), and
  ``owa`` on the policy host, whose certificate doesn't name it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from servers.dns import NsdServer, PolicyServer, free_loopback_address

LEGACY_MX = ("mx*.legacy.test",)
TARGET_MX = ("*.mail.target.test",)
SPF_INCLUDES = ("spf.target.test",)
#: What a Graph target needs besides its host: the app's identity (never contacted by these checks).
GRAPH_APP = 'tenant_id = "tenant.test"\nclient_id = "app"\nclient_secret = "env:UNUSED_PW"'
ZONES = ("legacy.test", "good.test", "moved.test", "broken.test", "null.test", "target.test")


def _zone(origin: str, serial: int, primary: str, secondary: str, body: str) -> str:
    return f"""$ORIGIN {origin}.
$TTL 300
@ IN SOA ns1.{origin}. hostmaster.{origin}. {serial} 3600 600 86400 300
@ IN NS ns1.{origin}.
@ IN NS ns2.{origin}.
ns1 IN A {primary}
ns2 IN A {secondary}
{body}"""


def zones(primary: str, secondary: str, web: str, *, on_secondary: bool) -> dict[str, str]:
    legacy = f"""@ IN A 127.0.0.1
@ 86400 IN MX 10 mx1.legacy.test.
@ 86400 IN MX 30 relay.legacy.test.
mx1 IN A 127.0.0.1
mx2 IN A 127.0.0.1
relay IN CNAME mx1.legacy.test.
mail IN A 127.0.0.1
@ IN TXT "v=spf1 include:_spf1.legacy.test include:_spf2.legacy.test a mx -all"
_spf1 IN TXT "v=spf1 include:_spf3.legacy.test a:mail.legacy.test mx:legacy.test ip4:127.0.0.1 -all"
_spf2 IN TXT "v=spf1 a:mail.legacy.test a:mx1.legacy.test exists:%{{i}}.bl.legacy.test -all"
_spf3 IN TXT "v=spf1 a:mx2.legacy.test a:mail.legacy.test ?all"
_mta-sts IN TXT "v=STSv1; id=20240101T000000"
mta-sts IN A {web}
autodiscover 3600 IN CNAME mail.legacy.test.
"""
    if on_secondary:  # an old copy: the transfer of the last change never happened
        legacy += "@ 86400 IN MX 20 mx2.legacy.test.\n"
    bodies = {
        "legacy.test": (2024060101 if on_secondary else 2024060102, legacy),
        "good.test": (
            2024060101,
            f"""@ IN MX 10 mx1.legacy.test.
@ IN TXT "v=spf1 mx include:spf.target.test -all"
_dmarc IN TXT "v=DMARC1; p=reject; rua=mailto:dmarc@good.test"
_mta-sts IN TXT "v=STSv1; id=20240601"
mta-sts IN A {web}
autodiscover IN CNAME autodiscover.target.test.
""",
        ),
        "moved.test": (
            2024060101,
            """@ 3600 IN MX 0 moved-test.mail.target.test.
@ IN TXT "v=spf1 include:spf.target.test -all"
_dmarc IN TXT "v=DMARC1; p=quarantine"
autodiscover IN CNAME autodiscover.target.test.
""",
        ),
        "broken.test": (
            2024060101,
            f"""@ IN MX 10 127.0.0.1.
@ IN MX 20 nohost.broken.test.
@ IN TXT "v=spf1 a:none1.broken.test a:none2.broken.test mx:none3.broken.test include:spf.target.test -all"
_dmarc IN TXT "v=DMARC1; rua=mailto:dmarc@broken.test"
_mta-sts IN TXT "v=STSv1; id=1"
mta-sts IN A {web}
""",
        ),
        "null.test": (2024060101, "@ IN MX 0 .\n"),
        "target.test": (
            2024060101,
            f"""autodiscover IN A 127.0.0.1
owa IN A {web}
spf IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
good-test.mail IN A 127.0.0.1
moved-test.mail IN A 127.0.0.1
""",
        ),
    }
    return {name: _zone(name, serial, primary, secondary, body) for name, (serial, body) in bodies.items()}


POLICIES = {
    "mta-sts.legacy.test": "version: STSv1\nmode: enforce\nmx: mx1.legacy.test\nmx: relay.legacy.test\nmax_age: 86400\n",
    "mta-sts.good.test": "version: STSv1\nmode: enforce\nmx: mx1.legacy.test\nmx: *.mail.target.test\nmax_age: 604800\n",
    "mta-sts.broken.test": "version: STSv1\nmode: testing\nmx: mx1.legacy.test\nmax_age: 86400\n",
}


@dataclass
class DnsLab:
    primary: NsdServer
    secondary: NsdServer
    policy: PolicyServer

    @property
    def ca_file(self) -> Path:
        return self.policy.ca_file

    def write_plan(
        self,
        root: Path,
        domains: tuple[str, ...],
        *,
        target_type: str = "imap",
        resolver: str | None = None,
        nameservers: dict[str, list[str]] | None = None,
        legacy_mx: tuple[str, ...] = LEGACY_MX,
        target_mx: tuple[str, ...] = TARGET_MX,
        spf_includes: tuple[str, ...] = SPF_INCLUDES,
        trust_ca: bool = True,
        timeout: float = 10.0,
    ) -> Path:
        """A plan checking ``domains``; ``nameservers`` defaults to both servers for every zone
        (``{}`` leaves it out: the checks then find the servers by NS lookup)."""
        if nameservers is None:
            both = [self.primary.endpoint, self.secondary.endpoint]
            nameservers = dict.fromkeys(ZONES, both)
        servers = ", ".join(f"{json.dumps(z)} = {json.dumps(s)}" for z, s in nameservers.items())
        root.mkdir(parents=True, exist_ok=True)
        entries = ", ".join(
            f'{{ source = "u{n}", target = "u{n}@{d}", wave = "w" }}' for n, d in enumerate(domains)
        )
        plan = root / "plan.toml"
        plan.write_text(
            f"""
[source]
type = "imap"
host = "127.0.0.1"
port = 10143
security = "plain"
password = "env:UNUSED_PW"

[target]
type = "{target_type}"
host = "127.0.0.1"
port = 10443
password = "env:UNUSED_PW"
{'service_account = "svc-migrate"' if target_type == "ews" else ""}
{GRAPH_APP if target_type == "graph" else ""}

[mailboxes]
entries = [ {entries} ]

[dns]
domains = {json.dumps(list(domains))}
resolver = "{resolver or self.primary.endpoint}"
{f"nameservers = {{ {servers} }}" if nameservers else ""}
legacy_mx = {json.dumps(list(legacy_mx))}
target_mx = {json.dumps(list(target_mx))}
spf_includes = {json.dumps(list(spf_includes))}
max_ttl = 300

[capacity]
{f'ca_file = "{self.ca_file}"' if trust_ca else ""}

[checks]
timeout = {timeout}
""",
            encoding="utf-8",
        )
        return plan


@contextmanager
def dns_lab() -> Iterator[DnsLab]:
    """Start the lab's two NSD instances and the policy host; stop everything on exit."""
    with ExitStack() as stack:
        primary_ip, secondary_ip = free_loopback_address(53), free_loopback_address(53)
        web_ip = free_loopback_address(443)
        certs = Path(tempfile.mkdtemp(prefix="mtasts", dir="/tmp"))
        stack.callback(shutil.rmtree, certs, ignore_errors=True)
        policy = PolicyServer(web_ip, POLICIES, certs)
        stack.callback(policy.stop)
        servers = [
            stack.enter_context(
                NsdServer(ip, zones(primary_ip, secondary_ip, web_ip, on_secondary=ip == secondary_ip))
            )
            for ip in (primary_ip, secondary_ip)
        ]
        yield DnsLab(servers[0], servers[1], policy)
