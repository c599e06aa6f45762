"""Transfer rates of several proxies measured in the same rounds (FETCH, POP3 RETR).

``proxy_bench.py`` measures each peer's transfer against direct in its own minutes, so two peers (or
two versions of ours, ``--before``) are compared across different loads. Here every peer runs at
once in front of the same two Dovecots, and each round makes one leg of direct and one of every
peer, the order turned by one each round; each peer's figure is the median of its per-round ratios
to direct. Lines as under proxy_bench.py's table. See bench/README.md.

    .venv/bin/python bench/proxy_transfer_bench.py --only nginx,ours-before,ours --before /tmp/main
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import proxy_bench as pb
from proxy.transfer import rotate
from servers.process import free_ports


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", default="nginx,ours", help="peers, comma-separated (as proxy_bench.py's)")
    parser.add_argument("--services", default="imap,pop3", help="imap,pop3")
    parser.add_argument("--rounds", type=int, default=24, help="rounds of direct and every peer (24)")
    parser.add_argument("--fetch-rounds", type=int, default=4, help="FETCHes of the 32 MB corpus per leg (4)")
    parser.add_argument("--before", type=Path, metavar="CHECKOUT", help="the checkout ours-before runs")
    args = parser.parse_args()
    sizes = pb.Sizes(
        latency_sessions=0,
        rate_seconds=0.0,
        fetch_rounds=args.fetch_rounds,
        retr_rounds=max(1, args.fetch_rounds // 2),  # a leg of about the same bytes
        idle_sessions=0,
    )
    services = [s for s in args.services.split(",") if s in ("imap", "pop3")]
    work = Path(tempfile.mkdtemp(prefix="proxy-transfer-bench-"))
    load_before = Path("/proc/loadavg").read_text().split()[:3]
    (dead,) = free_ports(1)
    peers: list[pb.Peer] = []
    rows: list[pb.Row] = []
    skipped: dict[str, str] = {}
    with pb.backends() as (legacy, target, _sink):
        pb.fill(legacy, pb.corpus(sizes))
        backend_pids = (legacy.pid, target.pid)
        try:
            for name in args.only.split(","):
                if why := pb.skip_reason(name, args.before):
                    skipped[name] = why
                    continue
                peers.append(pb.start_peer(name, legacy, target, dead, services, work, before=args.before))
            direct = pb.direct_routes(legacy, target, services)
            for service in services:

                def leg(route: pb.client.Route, service: str = service) -> tuple[int, float]:
                    got = pb.transfer_once(route, service, sizes)
                    assert got is not None
                    return got

                runs = {"direct": lambda s=service: leg(direct[s])}
                for peer in peers:
                    leg(peer.routes[service])  # warms the peer's path
                    runs[peer.name] = lambda r=peer.routes[service]: leg(r)
                pids = {peer.name: peer.pids for peer in peers}
                for name, alt in rotate(runs, pids, backend_pids, args.rounds).items():
                    row = pb.Row(name, service)
                    pb.fill_transfer(row, alt, bool(pids[name]))
                    rows.append(row)
        finally:
            for peer in peers:
                peer.stop()
    shutil.rmtree(work, ignore_errors=True)
    load_after = Path("/proc/loadavg").read_text().split()[:3]
    print(f"{args.rounds} rounds; a leg: FETCH of the {sizes.messages} x {sizes.message_kb} KB corpus "
          f"{sizes.fetch_rounds} times, or RETR of each message {sizes.retr_rounds} times")  # fmt: skip
    print(f"load average before: {' '.join(load_before)}; after: {' '.join(load_after)} (2 cores)")
    for row in rows:
        print(f"{row.peer:11} {row.service:5} {pb.fmt(row.transfer_mb_s, 0)} MB/s, "
              f"{pb.fmt(row.cpu_s_per_gb, 2)} CPU-s/GB of the peer")  # fmt: skip
    print("\n".join(pb.transfer_lines(rows)))
    for name, why in skipped.items():
        print(f"skipped {name}: {why}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
