"""Wait until every authoritative server of each zone serves the switch's records, or say who doesn't.

``confirm`` asks each server directly (non-recursive, ``dns_query``), round after round, until every
one serves every desired RRset or the deadline passes. It never claims success it hasn't seen: the
result is confirmed only when the last answer of every server was the desired RRset. A server still
serving the old records, nothing, or an error is named with what it serves instead, after each
round (``progress``) and in the result, so the step can say what it waits for.

The servers are the plan's list for the zone (``[switch.dns] nameservers``), else the zone's NS set
resolved (every address of every NS name): a secondary forgotten in a list the operator wrote is
the classic way to switch "everywhere" but one place.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import dns.name
import dns.resolver

from runners.plan.switch_model import HostPort
from runners.switch.dns_query import AuthServer, DnsQueryError, served, zone_servers
from runners.switch.records import DesiredRRset, rdata_texts


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One desired RRset a server doesn't serve yet, and what it serves instead."""

    label: str  # "example.com. MX"
    wanted: tuple[str, ...]
    #: The records it serves (empty: none), or None when it gave no authoritative answer.
    serves: tuple[str, ...] | None
    error: str | None = None

    def describe(self) -> str:
        if self.serves is None:
            instead = f"gives no answer ({self.error})"
        elif not self.serves:
            instead = "serves nothing"
        else:
            instead = "serves " + ", ".join(self.serves)
        return f"{self.label}: {instead} (wanted {', '.join(self.wanted)})"


@dataclass(frozen=True, slots=True)
class ServerState:
    server: AuthServer
    #: Empty when the server serves every desired RRset of its zone.
    mismatches: tuple[Mismatch, ...]

    @property
    def caught_up(self) -> bool:
        return not self.mismatches

    def describe(self) -> str:
        if self.caught_up:
            return f"{self.server} serves the new records"
        return f"{self.server}: " + "; ".join(m.describe() for m in self.mismatches)


@dataclass(frozen=True, slots=True)
class Confirmation:
    confirmed: bool
    #: Every server asked, as its last answers left it.
    servers: tuple[ServerState, ...]
    rounds: int
    elapsed: float

    @property
    def lagging(self) -> tuple[ServerState, ...]:
        return tuple(s for s in self.servers if not s.caught_up)

    def summary(self) -> str:
        if self.confirmed:
            return f"confirmed on {len(self.servers)} servers after {self.elapsed:.1f} s"
        lines = [f"waiting for {len(self.lagging)} of {len(self.servers)} servers ({self.elapsed:.1f} s):"]
        return "\n".join(lines + [f"  {s.describe()}" for s in self.lagging])


Progress = Callable[[Confirmation], None]


def servers_by_zone(
    desired: Sequence[DesiredRRset],
    listed: Mapping[str, Sequence[HostPort]],
    resolver: dns.resolver.Resolver | None = None,
) -> dict[dns.name.Name, tuple[AuthServer, ...]]:
    """The servers to confirm on per zone: the plan's list (``[switch.dns] nameservers``, keyed by
    absolute zone name), else the zone's NS set as ``resolver`` (default: the system's) sees it.

    Raises ``DnsQueryError`` when a zone's NS set can't be resolved into addresses.
    """
    out: dict[dns.name.Name, tuple[AuthServer, ...]] = {}
    for zone in dict.fromkeys(r.zone for r in desired):
        given = listed.get(zone.to_text())
        if given:
            out[zone] = tuple(AuthServer(s.host, s.port) for s in given)
        else:
            out[zone] = zone_servers(zone, resolver or dns.resolver.Resolver())
    return out


def confirm(
    desired: Sequence[DesiredRRset],
    servers: Mapping[dns.name.Name, Sequence[AuthServer]],
    *,
    timeout: float,
    interval: float = 2.0,
    query_timeout: float = 3.0,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Confirmation:
    """Ask until every server of each zone serves its desired RRsets, or ``timeout`` seconds pass.

    ``servers`` comes from ``servers_by_zone``. ``progress`` gets the state after every round that
    isn't confirmed yet. A server that caught up isn't asked again.
    """
    started = clock()
    # Each server is asked only for its own zone's records.
    pending = {(server, rrset) for rrset in desired for server in servers.get(rrset.zone, ())}
    missing: dict[tuple[AuthServer, DesiredRRset], Mismatch] = {}
    rounds = 0
    while True:
        rounds += 1
        for pair in sorted(pending, key=_order):
            mismatch = _check(*pair, query_timeout)
            if mismatch is None:
                pending.discard(pair)
                missing.pop(pair, None)
            else:
                missing[pair] = mismatch
        state = _state(desired, servers, missing, rounds, clock() - started)
        if state.confirmed or clock() - started >= timeout:
            return state
        if progress is not None:
            progress(state)
        sleep(max(0.0, min(interval, timeout - (clock() - started))))


def _order(pair: tuple[AuthServer, DesiredRRset]) -> tuple[str, str]:
    return (str(pair[0]), pair[1].label)


def _check(server: AuthServer, rrset: DesiredRRset, timeout: float) -> Mismatch | None:
    wanted = rdata_texts(rrset.rdataset())
    try:
        serving = served(server, rrset.name, rrset.rdtype, timeout)
    except DnsQueryError as exc:
        return Mismatch(rrset.label, wanted, None, exc.server_text)
    if rrset.served_by(serving):
        return None
    return Mismatch(rrset.label, wanted, rdata_texts(serving))


def _state(
    desired: Sequence[DesiredRRset],
    servers: Mapping[dns.name.Name, Sequence[AuthServer]],
    missing: Mapping[tuple[AuthServer, DesiredRRset], Mismatch],
    rounds: int,
    elapsed: float,
) -> Confirmation:
    states: list[ServerState] = []
    every = dict.fromkeys(s for rrset in desired for s in servers.get(rrset.zone, ()))
    for server in every:
        mismatches = tuple(m for (s, r), m in missing.items() if s == server)
        states.append(ServerState(server, tuple(sorted(mismatches, key=lambda m: m.label))))
    asked = bool(every) and all(rrset.zone in servers and servers[rrset.zone] for rrset in desired)
    return Confirmation(asked and not missing, tuple(states), rounds, elapsed)
