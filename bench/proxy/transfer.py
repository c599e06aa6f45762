"""Transfer rates that noise does not decide: direct and a peer alternated back to back, many rounds.

On a shared 2-core machine one transfer run varies by about ±15 %, so a rate measured once, minutes
away from direct's, says little. Here every round measures direct and the peer one right after the
other (direct first in even rounds, the peer first in odd ones, so a drift favours neither), and the
peer's figure is the **median of the per-round ratios** peer/direct, with their spread. Both legs use
the same client function, the same user, the same mailbox and the same backends.

CPU comes from ``/proc``: each task's ``schedstat`` (nanoseconds on the CPU, exact where the
clock-tick counters of ``stat`` round a 0.1 s leg to ±10 %), plus the reaped children's ticks. The
same file gives the time each task spent runnable but waiting for a CPU: on a loaded machine, the
process that waits longest per GB is the one the transfer waits on.
Context switches (voluntary: the process waited; involuntary: it was preempted) are summed over
every thread of the tree, so the cost of each peer's wake-ups can be compared per MB.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, slots=True)
class Usage:
    """What a set of process trees used so far: CPU seconds, seconds runnable but waiting for a CPU,
    context switches."""

    cpu: float = 0.0
    voluntary: int = 0
    involuntary: int = 0
    #: In a difference: the seconds waited, summed over the tasks alive at its end (a task that ended
    #: meanwhile takes its wait with it, so a plain difference of sums could go below zero).
    waited: float = 0.0
    #: In a snapshot: nanoseconds waited so far, by task id.
    task_waits: dict[int, int] = field(default_factory=dict)

    def __sub__(self, other: Usage) -> Usage:
        waited_ns = sum(ns - other.task_waits.get(tid, 0) for tid, ns in self.task_waits.items())
        return Usage(
            self.cpu - other.cpu,
            self.voluntary - other.voluntary,
            self.involuntary - other.involuntary,
            waited_ns / 1e9,
        )


def tree_usage(roots: Sequence[int]) -> Usage:
    """CPU (live tasks to the nanosecond, reaped children by their ticks) and context switches of
    every process under ``roots``."""
    parents: dict[int, int] = {}
    fields: dict[int, list[str]] = {}  # each process's stat after its name, read once
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _read(f"/proc/{entry}/stat")
            if stat:
                pid = int(entry)
                fields[pid] = stat[stat.rindex(")") + 2 :].split()
                parents[pid] = int(fields[pid][1])
    wanted = set(roots)
    cpu_ns = reaped_ticks = voluntary = involuntary = 0
    waits: dict[int, int] = {}
    for pid in parents:
        if not _under(pid, wanted, parents):
            continue
        reaped_ticks += sum(int(v) for v in fields[pid][13:15])  # cutime cstime
        tasks = _tasks_usage(f"/proc/{pid}")
        cpu_ns += tasks[0]
        voluntary += tasks[1]
        involuntary += tasks[2]
        waits.update(tasks[3])
    return Usage(cpu_ns / 1e9 + reaped_ticks / _CLOCK_TICKS, voluntary, involuntary, task_waits=waits)


def self_usage() -> Usage:
    """The bench process's own threads (the transfer client runs in it), not its children (the
    backends and the peers it started)."""
    cpu_ns, voluntary, involuntary, waits = _tasks_usage("/proc/self")
    return Usage(cpu_ns / 1e9, voluntary, involuntary, task_waits=waits)


def _tasks_usage(process: str) -> tuple[int, int, int, dict[int, int]]:
    """Nanoseconds on the CPU, voluntary and involuntary context switches of every thread of
    ``process`` (its ``/proc`` directory), and each thread's nanoseconds runnable but waiting for a
    CPU; nothing when it is gone."""
    cpu_ns = voluntary = involuntary = 0
    waits: dict[int, int] = {}
    try:
        tasks = os.listdir(f"{process}/task")
    except OSError:
        return 0, 0, 0, waits
    for tid in tasks:
        schedstat = _read(f"{process}/task/{tid}/schedstat")
        if schedstat:
            on_cpu, waiting = schedstat.split()[:2]
            cpu_ns += int(on_cpu)
            waits[int(tid)] = int(waiting)
        for line in _read(f"{process}/task/{tid}/status").splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                voluntary += int(line.split()[1])
            elif line.startswith("nonvoluntary_ctxt_switches:"):
                involuntary += int(line.split()[1])
    return cpu_ns, voluntary, involuntary, waits


def _under(pid: int, roots: set[int], parents: dict[int, int]) -> bool:
    while pid > 1:
        if pid in roots:
            return True
        pid = parents.get(pid, 0)
    return False


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


@dataclass(frozen=True, slots=True)
class Leg:
    """One transfer: bytes, wall seconds, and what the peer's processes and the backends used."""

    got: int
    seconds: float
    peer: Usage
    backends: Usage
    client: Usage

    @property
    def mb_s(self) -> float:
        return self.got / self.seconds / 1e6


@dataclass
class Alternated:
    """Rounds of (direct, peer) legs measured back to back."""

    direct: list[Leg] = field(default_factory=list)
    peer: list[Leg] = field(default_factory=list)

    @property
    def ratios(self) -> list[float]:
        return [p.mb_s / d.mb_s for d, p in zip(self.direct, self.peer, strict=True)]

    def ratio(self) -> float:
        return statistics.median(self.ratios)

    def mb_s(self, side: str) -> float:
        return statistics.median(leg.mb_s for leg in getattr(self, side))

    def per_gb(self, side: str, what: str) -> float:
        """CPU seconds (``what``: "peer", "backends", "client") per GB over every leg of ``side``."""
        legs: list[Leg] = getattr(self, side)
        return sum(getattr(leg, what).cpu for leg in legs) / (sum(leg.got for leg in legs) / 1e9)

    def waited_per_gb(self, side: str, what: str) -> float:
        """Seconds runnable but waiting for a CPU (``what`` as for ``per_gb``) per GB of ``side``."""
        legs: list[Leg] = getattr(self, side)
        return sum(getattr(leg, what).waited for leg in legs) / (sum(leg.got for leg in legs) / 1e9)

    def switches_per_mb(self, side: str, what: str) -> float:
        legs: list[Leg] = getattr(self, side)
        used = [getattr(leg, what) for leg in legs]
        return sum(u.voluntary + u.involuntary for u in used) / (sum(leg.got for leg in legs) / 1e6)

    def spread(self) -> str:
        """The per-round ratios, lowest to highest, in percent of direct."""
        ratios = sorted(self.ratios)
        return f"{100 * ratios[0]:.0f}–{100 * ratios[-1]:.0f} %" if ratios else "–"


def alternate(
    run: Callable[[bool], tuple[int, float]],
    peer_pids: Sequence[int],
    backend_pids: Sequence[int],
    rounds: int,
) -> Alternated:
    """``rounds`` rounds of ``run(False)`` (direct) and ``run(True)`` (through the peer), back to back,
    alternating which goes first. ``run`` returns (bytes received, seconds)."""
    out = Alternated()
    for n in range(rounds):
        for through_peer in (False, True) if n % 2 == 0 else (True, False):
            peer0, backends0, client0 = tree_usage(peer_pids), tree_usage(backend_pids), self_usage()
            got, seconds = run(through_peer)
            leg = Leg(
                got,
                seconds,
                tree_usage(peer_pids) - peer0,
                tree_usage(backend_pids) - backends0,
                self_usage() - client0,
            )
            (out.peer if through_peer else out.direct).append(leg)
    return out


def rotate(
    runs: dict[str, Callable[[], tuple[int, float]]],
    peer_pids: dict[str, Sequence[int]],
    backend_pids: Sequence[int],
    rounds: int,
) -> dict[str, Alternated]:
    """``rounds`` rounds in which direct (``runs["direct"]``) and every peer each make one leg, the
    order turned by one each round; each peer's legs paired with direct's of the same round. Peers
    measured minutes apart see different loads; here they share every round's."""
    names = list(runs)
    out = {name: Alternated() for name in names if name != "direct"}
    for n in range(rounds):
        legs: dict[str, Leg] = {}
        for name in names[n % len(names) :] + names[: n % len(names)]:
            pids = peer_pids.get(name, ())
            peer0, backends0, client0 = tree_usage(pids), tree_usage(backend_pids), self_usage()
            got, seconds = runs[name]()
            legs[name] = Leg(
                got,
                seconds,
                tree_usage(pids) - peer0,
                tree_usage(backend_pids) - backends0,
                self_usage() - client0,
            )
        for name, alternated in out.items():
            alternated.direct.append(legs["direct"])
            alternated.peer.append(legs[name])
    return out
