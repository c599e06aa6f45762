"""The routing proxy beside established mail proxies, in one run, in front of the same two Dovecots.

Peers: direct (the client goes to the user's backend itself), nginx's mail proxy (with an auth_http
service), Dovecot's own proxy (passdb ``proxy=y``), perdition, and ours (``cutover proxy``). Each
sits in front of the same two tuned Dovecots (mail on tmpfs, login processes that don't fork per
login, reused mail processes); users ``u000``..``u099`` alternate between them. For IMAP, POP3 and
SMTP submission (where the peer speaks it) the bench measures login latency, sessions per second
with 50 clients, the peer's CPU per session, transfer rate and CPU per GB, memory per idle session
(IMAP, 2,000 sessions) and the time to answer a user whose backend is down. See bench/README.md.

    .venv/bin/python bench/proxy_bench.py [--quick] [--only nginx,ours] [--output json]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import imaplib
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.extend([str(REPO), str(REPO / "tests")])  # tests/servers: the suite's private servers

from proxy import client  # noqa: E402
from proxy.ours import OursProxy, ours_available, uvloop_available  # noqa: E402
from proxy.procs import tree_cpu_seconds, tree_cpu_split, tree_memory_kb  # noqa: E402
from proxy.servers import BackendDovecot, DovecotProxy, NginxMail, Perdition, has_submissiond  # noqa: E402
from proxy.sink import SmtpSink  # noqa: E402
from proxy.transfer import Alternated, alternate  # noqa: E402
from servers.process import free_ports  # noqa: E402

PEERS = ("direct", "nginx", "dovecot", "perdition", "ours", "ours-uvloop", "ours-cpus", "ours-before")
SERVICES = ("imap", "pop3", "submission")
USERS = [f"u{i:03d}" for i in range(100)]
FETCH_USER = "u000"  # on the legacy backend: its INBOX holds the transfer corpus
DOWN_USER = "u999"  # routed to a port nothing listens on
PACKAGES = {  # Debian package -> a file it installs
    "dovecot-imapd": "/usr/lib/dovecot/imap",
    "dovecot-pop3d": "/usr/lib/dovecot/pop3",
    "dovecot-submissiond": "/usr/lib/dovecot/submission",
    "nginx": "/usr/sbin/nginx",
    "libnginx-mod-mail": "/usr/lib/nginx/modules/ngx_mail_module.so",
    "perdition": "/usr/sbin/perdition",
}


@dataclass(frozen=True)
class Sizes:
    latency_sessions: int
    rate_seconds: float
    fetch_rounds: int
    retr_rounds: int
    idle_sessions: int
    messages: int = 64
    message_kb: int = 512
    #: Rounds of direct and the peer back to back for the transfer figures (median ratio, spread).
    transfer_rounds: int = 15


FULL = Sizes(latency_sessions=300, rate_seconds=6.0, fetch_rounds=16, retr_rounds=8, idle_sessions=2000)
QUICK = Sizes(
    latency_sessions=30, rate_seconds=1.0, fetch_rounds=1, retr_rounds=1, idle_sessions=100, transfer_rounds=2
)


@dataclass
class Row:
    peer: str
    service: str
    login_p50_ms: float | None = None
    login_p95_ms: float | None = None
    sessions_per_s: float | None = None
    cpu_ms_per_session: float | None = None
    transfer_mb_s: float | None = None
    cpu_s_per_gb: float | None = None
    idle_kb_per_session: float | None = None
    idle_rss_kb_per_session: float | None = None
    down_answer_ms: float | None = None
    down_answer: str = ""
    errors: list[str] = field(default_factory=list)
    #: During the sessions/s run: how busy the whole machine was (100 % = every core), and the CPU
    #: per session of the clients and of the two backend Dovecots (where the rest of the time goes).
    machine_busy_pct: float | None = None
    client_cpu_ms_per_session: float | None = None
    backends_cpu_ms_per_session: float | None = None
    #: The kernel's share of the peer's own CPU in that run (system over user + system, %).
    kernel_cpu_pct: float | None = None
    #: Transfer, over the rounds alternated with direct: the median of the per-round ratios (% of
    #: direct), their lowest and highest, direct's median rate in those rounds, and per GB or MB
    #: through this peer: the backends' and the client's CPU, the peer's context switches; the
    #: backends' and the client's CPU per GB in the direct legs of the same rounds (what the peer adds
    #: to their work), and the seconds per GB each of peer, backends and client spent runnable but
    #: waiting for a CPU (the one that waits longest is what the transfer waits on).
    transfer_pct_of_direct: float | None = None
    transfer_pct_spread: tuple[float, float] | None = None
    transfer_direct_mb_s: float | None = None
    transfer_rounds: int = 0
    transfer_backends_cpu_s_per_gb: float | None = None
    transfer_client_cpu_s_per_gb: float | None = None
    transfer_switches_per_mb: float | None = None
    transfer_direct_backends_cpu_s_per_gb: float | None = None
    transfer_direct_client_cpu_s_per_gb: float | None = None
    transfer_waited_s_per_gb: tuple[float | None, float, float] | None = None


@dataclass
class Peer:
    name: str
    routes: dict[str, client.Route]  # service -> where the client connects
    down_ports: dict[str, int]  # service -> where the client connects for DOWN_USER
    pids: list[int]  # roots of the peer's process trees (none for direct)
    stop: Callable[[], None]


# --- setting up ------------------------------------------------------------------------------------


def install_missing(say: Callable[[str], None]) -> None:
    missing = [pkg for pkg, path in PACKAGES.items() if not Path(path).exists()]
    if not missing:
        return
    if os.geteuid() != 0:
        say(f"not root: not installing {', '.join(missing)}")
        return
    say(f"installing {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)  # fmt: skip


def corpus(sizes: Sizes) -> list[bytes]:
    """Messages of ``message_kb`` each: headers, then base64 lines of random bytes (incompressible)."""
    out = []
    line_bytes = 57  # 76 base64 characters a line
    lines = sizes.message_kb * 1024 // 78
    for n in range(sizes.messages):
        body = b"".join(base64_line(os.urandom(line_bytes)) for _ in range(lines))
        head = (f"From: bench@example.org\r\nTo: {FETCH_USER}@example.org\r\nSubject: corpus {n}\r\n"
                f"Message-ID: <corpus-{n}@bench.example>\r\nMIME-Version: 1.0\r\n"
                "Content-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n")  # fmt: skip
        out.append(head.encode() + body)
    return out


def base64_line(data: bytes) -> bytes:
    return base64.b64encode(data) + b"\r\n"


def fill(backend: BackendDovecot, messages: list[bytes]) -> None:
    imap = imaplib.IMAP4("127.0.0.1", backend.imap_port)
    imap.login(FETCH_USER, client.password_of(FETCH_USER))
    for message in messages:
        imap.append("INBOX", None, None, message)
    imap.logout()


@contextlib.contextmanager
def backends() -> Iterator[tuple[BackendDovecot, BackendDovecot, SmtpSink]]:
    sink = SmtpSink().start()
    legacy, target = BackendDovecot("legacy", sink.port), BackendDovecot("target", sink.port)
    for server in (legacy, target):
        for user in USERS:
            server.add_user(user, client.password_of(user))
    try:
        legacy.start()
        target.start()
        yield legacy, target, sink
    finally:
        legacy.stop()
        target.stop()
        sink.stop()


def service_port(server: BackendDovecot, service: str) -> int:
    return {"imap": server.imap_port, "pop3": server.pop3_port, "submission": server.submission_port}[service]


def user_routes(
    legacy: BackendDovecot, target: BackendDovecot, dead: int, services: list[str]
) -> dict[str, dict[str, int]]:
    """service -> user -> the backend port a router must send them to."""
    out = {}
    for service in services:
        table = {u: service_port(target if client.user_index(u) % 2 else legacy, service) for u in USERS}
        table[DOWN_USER] = dead
        out[service] = table
    return out


def start_peer(
    name: str,
    legacy: BackendDovecot,
    target: BackendDovecot,
    dead: int,
    services: list[str],
    work: Path,
    profile: str | None = None,
    before: Path | None = None,
) -> Peer:
    if name == "direct":
        routes = {s: client.Route(service_port(legacy, s), service_port(target, s)) for s in services}
        return Peer(name, routes, dict.fromkeys(services, dead), [], lambda: None)
    table = user_routes(legacy, target, dead, services)
    if name == "nginx":
        nginx = NginxMail(table, "submission" in services).start()
        return _fronted(name, nginx.ports, [nginx.pid], nginx.stop)
    if name == "dovecot":
        proxy = DovecotProxy(table, "submission" in services).start()
        return _fronted(name, proxy.ports, [proxy.pid], proxy.stop)
    if name == "perdition":
        started = []
        try:
            for service, protocol in (("imap", "IMAP4"), ("pop3", "POP3")):
                started.append((service, Perdition(protocol, table[service]).start()))
        except BaseException:
            for _, p in started:
                p.stop()
            raise

        def stop_all() -> None:
            for _, p in started:
                p.stop()

        return _fronted(name, {s: p.port for s, p in started}, [p.pid for _, p in started], stop_all)
    if name in ("ours", "ours-uvloop", "ours-cpus", "ours-before"):
        uvloop = name == "ours-uvloop"
        workers = 1 if profile else 0 if name == "ours-cpus" else None  # ours-cpus: one worker per CPU
        # ours-before: the same proxy from another checkout (--before), measured in the same run
        checkout = before if name == "ours-before" and before is not None else REPO
        ours = OursProxy(
            work, legacy, target, dead, services, USERS, DOWN_USER, profile, uvloop, workers, checkout
        ).start()
        return _fronted(name, ours.ports, [ours.pid], ours.stop)
    raise ValueError(name)


def _fronted(name: str, ports: dict[str, int], pids: list[int], stop: Callable[[], None]) -> Peer:
    return Peer(name, {s: client.Route(p, p) for s, p in ports.items()}, dict(ports), pids, stop)


def skip_reason(name: str, before: Path | None = None) -> str | None:
    """Why a peer can't run here, or None."""
    if name == "ours-before" and before is None:
        return "give --before CHECKOUT (a checkout of the code to compare with)"
    if name == "nginx" and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        return "nginx is not installed"
    if name == "nginx" and not NginxMail.module.exists():
        return "libnginx-mod-mail is not installed"
    if name == "perdition" and not Path("/usr/sbin/perdition").exists():
        return "perdition is not installed"
    if name in ("ours", "ours-uvloop", "ours-cpus") and (why := ours_available()):
        return why
    if name == "ours-uvloop" and (why := uvloop_available()):
        return why
    return None


def peer_services(name: str, services: list[str]) -> list[str]:
    if name == "perdition":
        return [s for s in services if s != "submission"]  # it speaks POP3 and IMAP only
    return services


# --- measuring -------------------------------------------------------------------------------------


def cpu(peer: Peer) -> float:
    return sum(tree_cpu_seconds(pid) for pid in peer.pids)


def cpu_split(peer: Peer) -> tuple[float, float]:
    """(user, system) CPU seconds of the peer's process trees."""
    splits = [tree_cpu_split(pid) for pid in peer.pids]
    return sum(u for u, _ in splits), sum(s for _, s in splits)


def machine_busy() -> tuple[int, int]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return sum(ticks) - idle, sum(ticks)


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_service(
    peer: Peer,
    service: str,
    sizes: Sizes,
    say: Callable[[str], None],
    backend_pids: tuple[int, ...] = (),
    direct: client.Route | None = None,
) -> Row:
    row = Row(peer.name, service)
    dialogue = client.DIALOGUES[service]
    route = peer.routes[service]
    try:
        client.login_latencies(dialogue, route, USERS, 20)  # warm: processes, caches, connections
        lat = sorted(client.login_latencies(dialogue, route, USERS, sizes.latency_sessions))
        row.login_p50_ms = statistics.median(lat) * 1000
        row.login_p95_ms = lat[max(0, int(len(lat) * 0.95) - 1)] * 1000
        before, busy0, clients0 = cpu(peer), machine_busy(), children_cpu()
        split0 = cpu_split(peer)
        backends0 = sum(tree_cpu_seconds(pid) for pid in backend_pids)
        sessions, wall, errors = client.sessions_per_second(service, route, USERS, 50, sizes.rate_seconds)
        used = cpu(peer) - before
        split1 = cpu_split(peer)
        user, system = split1[0] - split0[0], split1[1] - split0[1]
        row.kernel_cpu_pct = 100 * system / (user + system) if user + system > 0 else None
        busy1 = machine_busy()
        row.machine_busy_pct = 100 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
        per = 1000 / max(1, sessions)
        row.client_cpu_ms_per_session = (children_cpu() - clients0) * per
        row.backends_cpu_ms_per_session = (sum(tree_cpu_seconds(p) for p in backend_pids) - backends0) * per
        row.sessions_per_s = sessions / wall
        row.cpu_ms_per_session = used * 1000 / sessions if peer.pids and sessions else None
        row.errors += errors[:3]
    except (OSError, client.DialogueError) as exc:
        row.errors.append(f"sessions: {exc}"[:200])
    try:
        if direct is not None:
            measure_transfer(peer, service, sizes, row, direct, backend_pids)
    except (OSError, client.DialogueError) as exc:
        row.errors.append(f"transfer: {exc}"[:200])
    downs = [client.answer_when_down(dialogue, peer.down_ports[service], DOWN_USER) for _ in range(3)]
    row.down_answer_ms = statistics.median(t for t, _ in downs) * 1000
    row.down_answer = downs[0][1]
    if service == "imap" and peer.pids and sizes.idle_sessions:
        measure_idle(peer, row, sizes)
    say(f"  {peer.name:9} {service:10} done")
    return row


def direct_routes(
    legacy: BackendDovecot, target: BackendDovecot, services: list[str]
) -> dict[str, client.Route]:
    """service -> where a client goes without a proxy: the user's own backend."""
    return {s: client.Route(service_port(legacy, s), service_port(target, s)) for s in services}


def median_rows(rounds: list[list[Row]]) -> list[Row]:
    """One row per peer and service (in the first round's order): each figure the median over the
    rounds that have it; text and tuples from the first round; every round's errors."""
    groups: dict[tuple[str, str], list[Row]] = {}
    for one in rounds:
        for row in one:
            groups.setdefault((row.peer, row.service), []).append(row)
    out: list[Row] = []
    for same in groups.values():
        first = same[0]
        merged = Row(first.peer, first.service)
        for name in merged.__dataclass_fields__:
            values = [getattr(r, name) for r in same]
            if name == "errors":
                merged.errors = [e for r in same for e in r.errors]
            elif all(isinstance(v, float) for v in values if v is not None) and any(
                v is not None for v in values
            ):
                setattr(merged, name, statistics.median(v for v in values if v is not None))
            else:
                setattr(merged, name, values[0])
        out.append(merged)
    return out


def warm_backends(routes: dict[str, client.Route], say: Callable[[str], None]) -> None:
    """Sessions of 50 clients at once straight to the backends, untimed, before any peer: the
    Dovecots start their login and mail processes for that many on first need and keep them; the
    first peer measured paid for that. (Not all of the order's effect, or the load's rise through a
    run: on 2026-12-08 ours measured first read the fewest sessions a second of the three proxies in
    3 runs of 3, one of them with this warm-up, and the middle figure measured last.)"""
    for service, route in routes.items():
        say(f"warming the backends: {service}")
        client.sessions_per_second(service, route, USERS, 50, 3.0)


def transfer_once(route: client.Route, service: str, sizes: Sizes) -> tuple[int, float] | None:
    """One transfer leg, (bytes, seconds): FETCH of the corpus ``fetch_rounds`` times, or RETR of
    every message ``retr_rounds`` times; None for a service without one."""
    if service == "imap" and sizes.fetch_rounds:
        return client.imap_fetch(route, FETCH_USER, sizes.fetch_rounds)
    if service == "pop3" and sizes.retr_rounds:
        return client.pop3_retr(route, FETCH_USER, sizes.messages, sizes.retr_rounds)
    return None


def measure_transfer(
    peer: Peer, service: str, sizes: Sizes, row: Row, direct: client.Route, backend_pids: tuple[int, ...]
) -> None:
    """The transfer rate as the median of ``transfer_rounds`` ratios to direct measured right beside
    it (direct's own row alternates direct with itself: its spread is the noise floor)."""
    if transfer_once(peer.routes[service], service, sizes) is None:  # also warms the peer's path
        return

    def run(through_peer: bool) -> tuple[int, float]:
        leg = transfer_once(peer.routes[service] if through_peer else direct, service, sizes)
        assert leg is not None
        return leg

    alt = alternate(run, peer.pids, backend_pids, max(1, sizes.transfer_rounds))
    fill_transfer(row, alt, bool(peer.pids))


def fill_transfer(row: Row, alt: Alternated, has_process: bool) -> None:
    row.transfer_rounds = len(alt.peer)
    row.transfer_mb_s = alt.mb_s("peer")
    row.transfer_direct_mb_s = alt.mb_s("direct")
    ratios = sorted(alt.ratios)
    row.transfer_pct_of_direct = 100 * alt.ratio()
    row.transfer_pct_spread = (100 * ratios[0], 100 * ratios[-1])
    row.cpu_s_per_gb = alt.per_gb("peer", "peer") if has_process else None
    row.transfer_switches_per_mb = alt.switches_per_mb("peer", "peer") if has_process else None
    row.transfer_backends_cpu_s_per_gb = alt.per_gb("peer", "backends")
    row.transfer_client_cpu_s_per_gb = alt.per_gb("peer", "client")
    row.transfer_direct_backends_cpu_s_per_gb = alt.per_gb("direct", "backends")
    row.transfer_direct_client_cpu_s_per_gb = alt.per_gb("direct", "client")
    row.transfer_waited_s_per_gb = (
        alt.waited_per_gb("peer", "peer") if has_process else None,
        alt.waited_per_gb("peer", "backends"),
        alt.waited_per_gb("peer", "client"),
    )


def measure_idle(peer: Peer, row: Row, sizes: Sizes) -> None:
    time.sleep(0.5)
    rss0, pss0 = (sum(v) for v in zip(*(tree_memory_kb(p) for p in peer.pids), strict=True))
    conns: list[client.Conn] = []
    try:
        conns = client.open_idle(client.DIALOGUES["imap"], peer.routes["imap"], USERS, sizes.idle_sessions)
        time.sleep(1.0)
        rss1, pss1 = (sum(v) for v in zip(*(tree_memory_kb(p) for p in peer.pids), strict=True))
        row.idle_kb_per_session = (pss1 - pss0) / len(conns)
        row.idle_rss_kb_per_session = (rss1 - rss0) / len(conns)
    except (OSError, client.DialogueError) as exc:
        row.errors.append(f"idle: {exc}"[:200])
    finally:
        for conn in conns:
            conn.close()
        time.sleep(0.5)


def start_profiler(path: str, peer: Peer) -> subprocess.Popen[bytes]:
    """py-spy sampling our proxy's process for as long as it is measured (folded stacks in ``path``)."""
    return subprocess.Popen(
        ["py-spy", "record", "--pid", str(peer.pids[0]), "--rate", "250", "--format", "raw",
         "--output", path, "--nonblocking"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip


# --- the report ------------------------------------------------------------------------------------


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def table(rows: list[Row], skipped: dict[str, str], load: tuple[str, str]) -> str:
    head = ("peer", "service", "login p50/p95 ms", "sessions/s (50)", "CPU ms/session",
            "MB/s (CPU s/GB)", "idle KB/session", "backend down")  # fmt: skip
    lines = []
    for r in rows:
        transfer = "–" if r.transfer_mb_s is None else f"{r.transfer_mb_s:,.0f} ({fmt(r.cpu_s_per_gb, 2)})"
        if r.transfer_pct_of_direct is not None:  # the goal: >= 90 % of direct
            transfer += f", {r.transfer_pct_of_direct:.0f} % of direct"
        lines.append((
            r.peer, r.service, f"{fmt(r.login_p50_ms, 2)} / {fmt(r.login_p95_ms, 2)}", fmt(r.sessions_per_s, 0),
            fmt(r.cpu_ms_per_session, 2), transfer,
            "–" if r.idle_kb_per_session is None else f"{r.idle_kb_per_session:.1f} (RSS {r.idle_rss_kb_per_session:.1f})",
            f"{fmt(r.down_answer_ms, 1)} ms",
        ))  # fmt: skip
    widths = [max(len(str(x)) for x in col) for col in zip(head, *lines, strict=False)]
    out = [" | ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    out.append("-+-".join("-" * w for w in widths))
    out += [" | ".join(str(c).ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]
    out.append("")
    out.append(
        f"load average before: {load[0]}; after: {load[1]} (2 cores; other work on the machine counts)"
    )
    # The goal is the login's overhead over direct, beside the best of the established proxies.
    direct_p50 = {r.service: r.login_p50_ms for r in rows if r.peer == "direct" and r.login_p50_ms}
    overheads = [
        f"{r.peer} {r.service} {r.login_p50_ms - direct_p50[r.service]:+.2f}"
        for r in rows
        if r.peer != "direct" and r.login_p50_ms is not None and r.service in direct_p50
    ]
    if overheads:
        out.append("login p50 over direct, ms: " + "; ".join(overheads))
    out.append(
        "during sessions/s: machine busy % (all cores) | client CPU ms/session | backends' CPU ms/session"
        " | the peer's CPU in the kernel, %"
    )
    for r in rows:
        if r.machine_busy_pct is not None:
            out.append(f"  {r.peer:11} {r.service:10} {r.machine_busy_pct:5.1f} % | "
                       f"{fmt(r.client_cpu_ms_per_session, 2)} | {fmt(r.backends_cpu_ms_per_session, 2)} | "
                       f"{fmt(r.kernel_cpu_pct, 0)}")  # fmt: skip
    out += transfer_lines(rows)
    for r in rows:
        if r.down_answer:
            out.append(f"backend down, {r.peer} {r.service}: {r.down_answer}")
    for r in rows:
        for e in r.errors:
            out.append(f"error, {r.peer} {r.service}: {e}")
    for name, why in skipped.items():
        out.append(f"skipped {name}: {why}")
    return "\n".join(out)


def transfer_lines(rows: list[Row]) -> list[str]:
    """Under the table: how each transfer figure was reached and how far its rounds spread."""
    measured = [r for r in rows if r.transfer_pct_spread is not None]
    if not measured:
        return []
    out = [
        f"transfer: median of {measured[0].transfer_rounds} rounds, each direct and the peer back to back "
        "(direct's row: direct against itself, the noise floor) | % of direct, lowest–highest round | "
        "direct MB/s in those rounds | through the peer, CPU s/GB of backends, client (direct's legs: "
        "backends, client) | peer's context switches/MB | through the peer, s/GB waiting for a CPU: peer, "
        "backends, client"
    ]
    for r in measured:
        low, high = r.transfer_pct_spread or (0.0, 0.0)
        waited = " / ".join(fmt(w, 2) for w in r.transfer_waited_s_per_gb or ())
        out.append(f"  {r.peer:11} {r.service:10} {fmt(r.transfer_pct_of_direct, 0)} % ({low:.0f}–{high:.0f} %) | "
                   f"{fmt(r.transfer_direct_mb_s, 0)} | {fmt(r.transfer_backends_cpu_s_per_gb, 2)}, "
                   f"{fmt(r.transfer_client_cpu_s_per_gb, 2)} ({fmt(r.transfer_direct_backends_cpu_s_per_gb, 2)}, "
                   f"{fmt(r.transfer_direct_client_cpu_s_per_gb, 2)}) | {fmt(r.transfer_switches_per_mb, 1)} | "
                   f"{waited}")  # fmt: skip
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of about a minute")
    parser.add_argument("--only", default=",".join(PEERS), help=f"peers, comma-separated ({','.join(PEERS)})")
    parser.add_argument("--services", default=",".join(SERVICES), help="imap,pop3,submission")
    parser.add_argument("--idle", type=int, help="idle IMAP sessions (default 2000, --quick 100; 0: skip)")
    parser.add_argument("--no-transfer", action="store_true", help="skip the transfer measures (FETCH, RETR)")
    parser.add_argument(
        "--transfer-rounds", type=int, help="rounds of direct and each peer back to back (15)"
    )
    parser.add_argument(
        "--rounds", type=int, default=1,
        help="measure the peers this many times, the order of --only reversed every other round; each "
        "figure of the table is the median over the rounds (the first peer measured meets a quieter "
        "machine than the last: the load rises through a run)",
    )  # fmt: skip
    parser.add_argument("--output", choices=("table", "json"), default="table")
    parser.add_argument("--before", type=Path, metavar="CHECKOUT",
                        help="run peer ours-before from this checkout (e.g. `git worktree add` of main)")  # fmt: skip
    parser.add_argument("--profile", metavar="FILE", help="run our proxy under cProfile (CPU time) into FILE")
    parser.add_argument(
        "--py-spy", metavar="FILE", help="profile our proxy with py-spy (raw format) into FILE"
    )
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    if args.idle is not None:
        sizes = Sizes(**{**asdict(sizes), "idle_sessions": args.idle})
    if args.no_transfer:
        sizes = Sizes(**{**asdict(sizes), "fetch_rounds": 0, "retr_rounds": 0})
    if args.transfer_rounds:
        sizes = Sizes(**{**asdict(sizes), "transfer_rounds": args.transfer_rounds})

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    install_missing(say)
    services = [s for s in args.services.split(",") if s]
    skipped: dict[str, str] = {}
    if "submission" in services and not has_submissiond():
        services.remove("submission")
        skipped["submission"] = (
            "dovecot-submissiond is not installed: the backends can't speak SMTP submission"
        )
    load_before = Path("/proc/loadavg").read_text().split()[0:3]
    rounds: list[list[Row]] = []
    work = Path(tempfile.mkdtemp(prefix="proxy-bench-"))
    (dead,) = free_ports(1)
    with backends() as (legacy, target, _sink):
        say("filling the transfer corpus")
        fill(legacy, corpus(sizes))
        warm_backends(direct_routes(legacy, target, services), say)
        order = [name for name in args.only.split(",") if name]
        for round_no in range(max(1, args.rounds)):
            names = order if round_no % 2 == 0 else order[::-1]
            measured: list[Row] = []
            for name in names:
                if why := skip_reason(name, args.before):
                    skipped[name] = why
                    continue
                peer_svcs = peer_services(name, services)
                try:
                    peer = start_peer(name, legacy, target, dead, peer_svcs, work, args.profile, args.before)
                except Exception as exc:  # a peer that would not start is reported, the others still run
                    skipped[name] = f"did not start: {exc}"[:400]
                    continue
                for service in peer_svcs:
                    if service not in peer.routes:
                        skipped[f"{name} {service}"] = "it does not listen for this service (yet)"
                say(f"{name}: measuring {', '.join(s for s in peer_svcs if s in peer.routes)}")
                profiler = (
                    start_profiler(args.py_spy, peer) if name.startswith("ours") and args.py_spy else None
                )
                try:
                    pids = (legacy.pid, target.pid)
                    direct = direct_routes(legacy, target, peer_svcs)
                    measured += [
                        measure_service(peer, s, sizes, say, pids, direct[s])
                        for s in peer_svcs
                        if s in peer.routes
                    ]
                finally:
                    if profiler is not None:
                        profiler.send_signal(signal.SIGINT)
                        profiler.wait(60)
                    peer.stop()
            rounds.append(measured)
    shutil.rmtree(work, ignore_errors=True)
    rows = median_rows(rounds)
    load = (" ".join(load_before), " ".join(Path("/proc/loadavg").read_text().split()[0:3]))
    if args.output == "json":
        print(json.dumps({"rows": [asdict(r) for r in rows], "skipped": skipped, "load": load,
                          "sizes": asdict(sizes),
                          "rounds": [[asdict(r) for r in one] for one in rounds] if len(rounds) > 1 else []},
                         indent=2))  # fmt: skip
    else:
        print(table(rows, skipped, load))
    return 0


if __name__ == "__main__":
    sys.exit(main())
