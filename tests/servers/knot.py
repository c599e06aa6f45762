"""Real DNS for the switch: a private Knot DNS primary that takes TSIG-signed dynamic updates, and a
secondary that transfers the zone from it.

``KnotServer`` runs ``knotd -c <conf>`` (Knot DNS, CZ.NIC's authoritative server, Debian package
``knot``) in the foreground on one loopback address, port 53 (like the NSD instances of
servers/dns.py: the zone's NS records and glue then name real servers, so "ask every server of the
NS set" works as it does in production). Everything lives under one temp dir
(``/tmp/knotXXXXXXXX``)::

    knot.conf   generated config        zones/<zone>.zone   the zone file (the primary's, kept in sync)
    db/         journal and timers      knot.sock           remote control (``knotc``)
    stderr.log  what Knot logs

The primary accepts an UPDATE only when it is signed with ``TSIG_KEY`` (hmac-sha256); an unsigned
one or one signed with another secret is refused. It sends NOTIFY to the secondary, which then
transfers by IXFR (AXFR the first time). A test makes the secondary lag with ``freeze()``: Knot
holds every zone-changing event (the refresh a NOTIFY plans among them) until ``thaw()``.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal, Self

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode

from servers.dns import free_loopback_address
from servers.process import ServerProcess

#: The switch's key: a name, an algorithm and a base64 secret, as a plan's ``[switch.dns]`` names them.
TSIG_NAME = "cutover-switch."
TSIG_ALGORITHM = "hmac-sha256"
TSIG_SECRET = base64.b64encode(hashlib.sha256(b"cutover switch test key").digest()).decode()

ZONE = "switch.test"
LEGACY_MX = "mx.legacy.test."
TARGET_MX = "mx.target.test."
TARGET_AUTODISCOVER = "autodiscover.target.test."


class KnotError(RuntimeError):
    """knotd could not be started or controlled (the message carries its log)."""


def test_zone(primary: str, secondary: str, *, serial: int = 1) -> str:
    """``switch.test`` before the switch: legacy MX, an autodiscover A record, NS with glue."""
    return f"""$ORIGIN {ZONE}.
$TTL 300
@            SOA  ns1 hostmaster {serial} 3600 600 86400 300
@            NS   ns1
@            NS   ns2
ns1          A    {primary}
ns2          A    {secondary}
@            MX   10 {LEGACY_MX}
@            MX   20 mx2.legacy.test.
@            TXT  "v=spf1 mx -all"
autodiscover A    192.0.2.10
"""


class KnotServer(ServerProcess):
    """One private knotd, primary (with ``zone_text``) or secondary (transferring from ``primary``)."""

    name = "knotd"
    binaries, candidates = ("knotd",), ("/usr/sbin/knotd", "/usr/local/sbin/knotd")
    error = KnotError
    temp_prefix = "knot"
    log_files = ("stderr.log",)
    start_attempts = 1  # the zone's glue names this address

    def __init__(
        self,
        role: Literal["primary", "secondary"],
        address: str,
        *,
        zone_text: str = "",
        peer: str,
        start_timeout: float = 15.0,
    ) -> None:
        super().__init__(start_timeout=start_timeout)
        self.role = role
        self.address = address
        self.port = 53
        self.zone_text = zone_text
        self.peer = peer  # the secondary for a primary, the primary for a secondary

    @property
    def endpoint(self) -> str:
        return f"{self.address}:{self.port}"

    def knotc(self, *args: str) -> str:
        """Run ``knotc`` against this instance; its output, or KnotError with it."""
        knotc = self._binary_beside("knotc")
        done = subprocess.run(
            [knotc, "-s", str(self._dir / "knot.sock"), "-t", "10", *args],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        if done.returncode != 0:
            raise KnotError(f"knotc {' '.join(args)} failed ({done.returncode}): {done.stdout}{done.stderr}")
        return done.stdout

    def freeze(self) -> None:
        """Hold every zone-changing event (a NOTIFY's refresh too) until ``thaw()``: a lagging server."""
        self.knotc("zone-freeze", ZONE)

    def thaw(self) -> None:
        self.knotc("zone-thaw", ZONE)

    def serial(self) -> int | None:
        """The SOA serial this server answers with, or None when it doesn't answer for the zone."""
        reply = self._ask_soa()
        if reply is None or not reply.answer:
            return None
        return int(reply.answer[0][0].serial)

    # -- internals --

    def _binary_beside(self, name: str) -> str:
        # knotc ships beside knotd (both in /usr/sbin on Debian, off an ordinary user's PATH).
        return str(Path(self.find() or "/usr/sbin/knotd").with_name(name))

    def _prepare(self, binary: str) -> None:
        root = self._dir
        (root / "zones").mkdir()
        (root / "db").mkdir()
        if self.role == "primary":
            (root / "zones" / f"{ZONE}.zone").write_text(self.zone_text)
            zone = f"""acl:
  - id: signed-update
    key: {TSIG_NAME}
    action: update
  - id: to-secondary
    address: {self.peer}
    action: transfer
# via: loopback traffic would leave from 127.0.0.1, which no ACL here allows.
remote:
  - id: secondary
    address: {self.peer}@53
    via: {self.address}
zone:
  - domain: {ZONE}
    notify: secondary
    acl: [signed-update, to-secondary]
"""
        else:
            zone = f"""acl:
  - id: from-primary
    address: {self.peer}
    action: notify
remote:
  - id: primary
    address: {self.peer}@53
    via: {self.address}
zone:
  - domain: {ZONE}
    master: primary
    acl: from-primary
"""
        (root / "knot.conf").write_text(
            f"""# Generated by tests/servers/knot.py for one test; deleted on stop().
server:
  rundir: "{root}"
  listen: {self.address}@{self.port}
  identity: ""
  version: ""
log:
  - target: stderr
    any: info
database:
  storage: "{root}/db"
control:
  listen: "{root}/knot.sock"
key:
  - id: {TSIG_NAME}
    algorithm: {TSIG_ALGORITHM}
    secret: {TSIG_SECRET}
template:
  - id: default
    storage: "{root}/zones"
    file: "%s.zone"
{zone}"""
        )

    def _argv(self, binary: str) -> list[str]:
        return [binary, "-c", str(self._dir / "knot.conf")]

    def _awaited(self) -> str:
        return f"answering for {ZONE} on {self.endpoint}"

    def _ready(self) -> bool:
        reply = self._ask_soa()
        return reply is not None and reply.rcode() == dns.rcode.NOERROR and bool(reply.answer)

    def _ask_soa(self) -> dns.message.Message | None:
        query = dns.message.make_query(ZONE, "SOA")
        query.flags &= ~dns.flags.RD
        try:
            return dns.query.udp(query, self.address, timeout=0.3, port=self.port)
        except (OSError, dns.exception.Timeout):
            return None


@dataclass
class KnotPair:
    """A primary and its secondary for ``switch.test``; started together, stopped together."""

    primary: KnotServer
    secondary: KnotServer

    @classmethod
    def create(cls) -> KnotPair:
        primary_ip, secondary_ip = free_loopback_address(53), free_loopback_address(53)
        while secondary_ip == primary_ip:
            secondary_ip = free_loopback_address(53)
        return cls(
            KnotServer(
                "primary", primary_ip, zone_text=test_zone(primary_ip, secondary_ip), peer=secondary_ip
            ),
            KnotServer("secondary", secondary_ip, peer=primary_ip),
        )

    def start(self) -> Self:
        self.primary.start()
        try:
            self.secondary.start()  # ready once it has transferred the zone and answers for it
        except BaseException:
            self.primary.stop()
            raise
        return self

    def stop(self) -> None:
        self.secondary.stop()
        self.primary.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log_text(self) -> str:
        return f"--- primary ---\n{self.primary.log_text()}--- secondary ---\n{self.secondary.log_text()}"


find_knotd = KnotServer.find  # the binary's path, or None when it isn't installed
