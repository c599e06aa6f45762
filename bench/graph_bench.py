"""How fast the Graph target moves mail inside Microsoft's per-mailbox budget, against the Graph
emulator (lab/graph) enforcing that budget; beside a naive one-request-per-message loop that
retries on 429, measured in the same run.

The emulator runs in its own process; each case runs in a fresh client process (so that CPU and
peak RSS are that case's alone) and drives ``GraphTarget.append`` in batches of 100, as the engine
does, from the benchmark corpus (bench/corpus.py). The windows are scaled down (default: 1,500
requests per 60 s and 22.5 MB per 30 s, Microsoft's 10,000 per 600 s and 150 MB per 300 s made ten
times shorter at 1.5 times the rate) so that a 5,000-message mailbox takes minutes, not an hour;
"the first minute" scales with them (a tenth of the request window).

    python bench/graph_bench.py                       # 5,000 messages: 1 mailbox, 8, naive
    python bench/graph_bench.py --messages 1000 --mailboxes 2 --output json
    python bench/graph_bench.py --messages 2500 --only-one   # or --only-parallel: one case

Figures: messages/s per mailbox after the first window against the budget-bound rate (requests
per window / window, over requests per message; or the byte budget over the mean message size,
whichever is lower: ``fraction``); the time each mailbox took against the least time the budget
allows for its corpus (``least_seconds``, ``time_fraction``: see ``least_seconds``); 429s after
the first (scaled) minute, requests per message, our CPU per 1,000 messages (the process's imports
apart, ``imports_cpu``: a run pays them once), and the client's peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

SECRET = "bench-graph-secret-2f9c1e"
CLIENT_ID = "0b5e2c1a-7d3f-4e9a-8c6b-1f2e3d4c5b6a"
BATCH = 100
BATCH_BYTES = 1024 * 1024
GOALS = {"fraction": 0.90, "cpu_per_1000": 1.0, "rss_mb": 120.0}


class Message(NamedTuple):
    folder: str
    flags: tuple[str, ...]
    internaldate: str
    body: bytes


# -- the emulator's process ------------------------------------------------------------------------


def emulator_main(args: argparse.Namespace) -> None:
    """Serve until stdin closes; "stats" on stdin prints the throttling events and request counts."""
    from lab.graph import AppConfig, GraphConfig, GraphEmulator, Limits, UserConfig

    users = tuple(
        UserConfig(f"user{n}@bench.test", max_receive_size=150 * 1024 * 1024) for n in range(args.users)
    )
    limits = Limits(requests=args.requests, request_window=args.window, upload_bytes=args.upload_bytes,
                    upload_window=args.upload_window)  # fmt: skip
    roles = frozenset({"Mail.ReadWrite", "Mail-Advanced.ReadWrite.All"})
    config = GraphConfig(apps=(AppConfig(CLIENT_ID, secret=SECRET, roles=roles),), users=users, limits=limits)
    with GraphEmulator(config) as emulator:
        print(json.dumps({"graph_url": emulator.graph_url, "ca_file": emulator.ca_file,
                          "tenant": config.tenant_id}), flush=True)  # fmt: skip
        for line in sys.stdin:
            if line.strip() == "stats":
                events = [{"at": e.at, "mailbox": e.mailbox, "reason": e.reason} for e in emulator.throttled]
                counts = {u.address: emulator.request_counts(u.address) for u in users}
                print(json.dumps({"throttled": events, "counts": counts}), flush=True)


class Emulator:
    def __init__(self, args: argparse.Namespace, users: int) -> None:
        command = [sys.executable, __file__, "--role", "emulator", "--users", str(users), *_limit_args(args)]
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     env=_env())  # fmt: skip
        assert self.proc.stdout is not None
        self.where: dict[str, str] = json.loads(self.proc.stdout.readline())

    def stats(self) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("stats\n")
        self.proc.stdin.flush()
        result: dict[str, Any] = json.loads(self.proc.stdout.readline())
        return result

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(30)


def _limit_args(args: argparse.Namespace) -> list[str]:
    return ["--requests", str(args.requests), "--window", str(args.window), "--upload-bytes",
            str(args.upload_bytes), "--upload-window", str(args.upload_window)]  # fmt: skip


def _env() -> dict[str, str]:
    return dict(os.environ) | {"PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}


# -- a client process: one case ------------------------------------------------------------------------


def write_corpus(args: argparse.Namespace, path: Path) -> int:
    """The corpus into a file the clients stream from (held in memory it would be most of their RSS)."""
    from corpus import build_corpus

    total = 0
    with path.open("wb") as out:
        for m in build_corpus(args.messages, args.seed):
            out.write(json.dumps([m.folder, m.flags, m.internaldate, len(m.body)]).encode() + b"\n" + m.body)
            total += len(m.body)
    return total


def read_corpus(path: Path) -> Iterator[Message]:
    with path.open("rb") as data:
        while line := data.readline():
            folder, flags, internaldate, size = json.loads(line)
            yield Message(folder, tuple(flags), internaldate, data.read(size))


def folders_of(path: Path) -> set[str]:
    return {m.folder for m in read_corpus(path)}


def client_main(args: argparse.Namespace) -> None:
    from runners.memory import tune_allocator

    tune_allocator()  # as `cutover` does first thing (cockpit/cli.py): the bench measures what a run does
    loaded_cpu = time.process_time()
    _import_client(args.role)  # a process's imports are paid once per run, not per message: counted apart
    imports_cpu = time.process_time() - loaded_cpu
    where = json.loads(args.where)
    corpus = Path(args.corpus)
    mailboxes = [f"user{n}@bench.test" for n in range(args.mailboxes)]
    started_cpu = time.process_time()
    started = time.monotonic()
    started_wall = time.time()
    done: dict[str, list[tuple[float, int]]] = {m: [] for m in mailboxes}
    worker = _naive if args.role == "naive" else _ours
    threads = [threading.Thread(target=worker, args=(args, where, m, corpus, done[m])) for m in mailboxes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({
        "seconds": time.monotonic() - started,
        "started": started_wall,
        "cpu": time.process_time() - started_cpu,
        "imports_cpu": imports_cpu,
        "rss_mb": peak_rss_mb(),
        "progress": {m: [(t - started, n) for t, n in points] for m, points in done.items()},
    }), flush=True)  # fmt: skip


def _import_client(role: str) -> None:
    """The modules the case's workers use (this environment may compile them from source)."""
    import httpx  # noqa: F401

    import runners.connectors.exchange_props
    import runners.connectors.graph_message
    import runners.connectors.graph_token
    import runners.model

    if role == "ours":
        import runners.connectors.graph_target
        import runners.folders  # noqa: F401


def batches(messages: Iterator[Message]) -> Iterator[tuple[int, list[Message]]]:
    """Batches as the engine makes them: up to 100 messages or 1 MiB (the plan's defaults)."""
    batch: list[Message] = []
    size = start = 0
    for n, m in enumerate(messages):
        batch.append(m)
        size += len(m.body)
        if len(batch) >= BATCH or size >= BATCH_BYTES:
            yield start, batch
            batch, size, start = [], 0, n + 1
    if batch:
        yield start, batch


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: Linux carries that over exec from the
    parent, whose corpus it would then count."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _endpoint(args: argparse.Namespace, where: dict[str, str]) -> Any:
    from runners.plan.graph_options import GraphOptions
    from runners.plan.model import Endpoint, Secret

    options = GraphOptions(
        tenant_id=where["tenant"], client_id=CLIENT_ID, client_secret=Secret(SECRET),
        authority_url=where["graph_url"], graph_url=where["graph_url"], route=args.route,
        pace_requests=args.requests, pace_request_window=args.window,
        pace_upload_bytes=args.upload_bytes, pace_upload_window=args.upload_window,
    )  # fmt: skip
    host, _, port = where["graph_url"].removeprefix("https://").rpartition(":")
    return Endpoint(type="graph", host=host, port=int(port), ca_file=where["ca_file"], graph=options)


def _ours(args: argparse.Namespace, where: dict[str, str], mailbox: str, corpus: Path,
          done: list[tuple[float, int]]) -> None:  # fmt: skip
    from runners.connectors.graph_target import GraphTarget
    from runners.folders import target_wire_name
    from runners.model import AppendItem

    target = GraphTarget(_endpoint(args, where), mailbox)
    wires = {f: target_wire_name(tuple(f.split(".")), "/", "")[0] for f in folders_of(corpus)}
    for wire in sorted(set(wires.values())):
        target.create_folder(wire)
    count = 0
    for start, batch in batches(read_corpus(corpus)):
        by_folder: dict[str, list[AppendItem]] = {}
        for n, m in enumerate(batch):
            by_folder.setdefault(wires[m.folder], []).append(
                AppendItem(m.body, m.flags, m.internaldate, f"{mailbox}/{start + n}")
            )
        for wire, items in by_folder.items():
            outcomes = target.append(wire, items)
            failed = [o for o in outcomes if o.error]
            if failed:
                print(f"{mailbox}: {len(failed)} failed: {failed[0].error}", file=sys.stderr)
            count += len(items)
        done.append((time.monotonic(), count))
    target.close()


def _naive(args: argparse.Namespace, where: dict[str, str], mailbox: str, corpus: Path,
           done: list[tuple[float, int]]) -> None:  # fmt: skip
    """One request per message into the Inbox, one at a time; on 429 wait as told (1 s if not) and
    send it again. No pacing, no concurrency: what a first script does."""
    import httpx

    from runners.connectors.exchange_props import props_for
    from runners.connectors.graph_message import json_message
    from runners.connectors.graph_token import token_source
    from runners.model import AppendItem

    endpoint = _endpoint(args, where)
    tokens = token_source(endpoint.graph, ca_file=endpoint.ca_file, tls_verify=True, timeout=60.0)
    url = f"{where['graph_url']}/v1.0/users/{mailbox}/mailFolders/inbox/messages"
    with httpx.Client(verify=where["ca_file"], timeout=60.0) as client:
        for n, m in enumerate(read_corpus(corpus)):
            item = AppendItem(m.body, m.flags, m.internaldate, f"{mailbox}/{n}")
            body = json_message(m.body, props_for(item)).body
            while True:
                headers = {
                    "Authorization": "Bearer " + tokens.token().value,
                    "Content-Type": "application/json",
                }
                response = client.post(url, content=body, headers=headers)
                if response.status_code != 429:
                    break
                time.sleep(float(response.headers.get("Retry-After") or 1))
            if n % BATCH == BATCH - 1 or n == args.messages - 1:
                done.append((time.monotonic(), n + 1))


# -- the cases, and the figures ----------------------------------------------------------------------


def run_case(args: argparse.Namespace, role: str, mailboxes: int) -> dict[str, Any]:
    emulator = Emulator(args, mailboxes)
    try:
        command = [sys.executable, __file__, "--role", role, "--mailboxes", str(mailboxes), "--messages",
                   str(args.messages), "--seed", str(args.seed), "--route", args.route, *_limit_args(args),
                   "--where", json.dumps(emulator.where), "--corpus", args.corpus]  # fmt: skip
        proc = subprocess.run(command, capture_output=True, text=True, env=_env(), check=False)
        if proc.returncode != 0:
            raise SystemExit(f"{role} failed:\n{proc.stderr}")
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
        result["emulator"] = emulator.stats()
        result["stderr"] = proc.stderr.strip().splitlines()[-5:]
        return result
    finally:
        emulator.close()


def figures(args: argparse.Namespace, result: dict[str, Any], mailboxes: int) -> dict[str, Any]:
    messages = args.messages * mailboxes
    counts = result["emulator"]["counts"]
    requests = sum(c.get("requests", 0) for c in counts.values())
    per_message = requests / messages
    mean_size = args.corpus_bytes / args.messages
    by_requests = args.requests / args.window / max(per_message, 1.0)
    by_bytes = args.upload_bytes / args.upload_window / mean_size
    bound = min(by_requests, by_bytes)
    rates = []
    for points in result["progress"].values():
        after = [(t, n) for t, n in points if t >= args.window]
        before = max((n for t, n in points if t < args.window), default=0)
        start = max((t for t, n in points if t < args.window), default=0.0)
        if after:
            end_t, end_n = after[-1]
            rates.append((end_n - before) / (end_t - start) if end_t > start else 0.0)
    rate = sum(rates) / len(rates) if rates else 0.0
    least = least_seconds(args, args.sizes, per_message)
    took = [points[-1][0] for points in result["progress"].values() if points]
    first_minute = args.window / 10
    late = [e for e in result["emulator"]["throttled"] if e["at"] - result["started"] > first_minute]
    return {
        "mailboxes": mailboxes,
        "messages": messages,
        "seconds": round(result["seconds"], 1),
        "rate_per_mailbox": round(rate, 2),
        "budget_bound_rate": round(bound, 2),
        "fraction": round(rate / bound, 3) if bound else 0.0,
        "least_seconds": round(least, 1),
        "time_fraction": round(sum(least / t for t in took) / len(took), 3) if took else 0.0,
        "throttled": len(result["emulator"]["throttled"]),
        "throttled_after_first_minute": len(late),
        "late_reasons": sorted({e["reason"] for e in late}),
        "requests_per_message": round(per_message, 3),
        "cpu_per_1000": round(result["cpu"] / messages * 1000, 3),
        "imports_cpu": round(result["imports_cpu"], 2),
        "rss_mb": round(result["rss_mb"], 1),
    }


def least_seconds(args: argparse.Namespace, sizes: list[int], per_message: float) -> float:
    """The least time the budget allows for the mailbox: a client infinitely fast, knowing the
    service's windows exactly, sends each message the moment both windows have room (greedy is
    optimal for sliding windows). It sends the first window's worth at once, then waits a whole
    window for the next: a client that keeps pace does the same, in bursts, so messages/s "after
    the first window" depends on where the corpus ends in a burst; this does not."""
    requests: deque[tuple[float, float]] = deque()
    uploads: deque[tuple[float, int]] = deque()
    spent_requests, spent_bytes, now = 0.0, 0, 0.0
    for size in sizes:
        cost = max(per_message, 1.0)
        while True:
            while requests and requests[0][0] <= now - args.window:
                spent_requests -= requests.popleft()[1]
            while uploads and uploads[0][0] <= now - args.upload_window:
                spent_bytes -= uploads.popleft()[1]
            waits = []
            if requests and spent_requests + cost > args.requests:
                waits.append(requests[0][0] + args.window)
            if uploads and spent_bytes + size > args.upload_bytes:
                waits.append(uploads[0][0] + args.upload_window)
            if not waits:
                break
            now = min(waits)
        requests.append((now, cost))
        uploads.append((now, size))
        spent_requests += cost
        spent_bytes += size
    return now


def _scale(one: dict[str, Any], many: dict[str, Any], key: str, mailboxes: int) -> float:
    """What N mailboxes moved at once against N times what one moved alone, by ``key``."""
    return round(many[key] * mailboxes / one[key], 2) if one[key] else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--mailboxes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--route", choices=("auto", "import-mime", "json"), default="json")
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--upload-bytes", type=int, default=22_500_000)
    parser.add_argument("--upload-window", type=float, default=30.0)
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument("--only-parallel", action="store_true", help="only the N-mailbox case")
    parser.add_argument("--only-one", action="store_true", help="only our 1-mailbox case")
    parser.add_argument(
        "--role", choices=("main", "emulator", "ours", "naive"), default="main", help=argparse.SUPPRESS
    )
    parser.add_argument("--users", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--where", default="", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", default="", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "emulator":
        emulator_main(args)
        return 0
    if args.role in ("ours", "naive"):
        client_main(args)
        return 0
    cases = [("ours", 1), ("naive", 1), ("ours", args.mailboxes)]
    if args.only_parallel:
        cases = cases[-1:]
    elif args.only_one:
        cases = cases[:1]
    with tempfile.TemporaryDirectory(prefix="graph-bench-") as work:
        args.corpus = str(Path(work) / "corpus.bin")
        args.corpus_bytes = write_corpus(args, Path(args.corpus))
        args.sizes = [len(m.body) for m in read_corpus(Path(args.corpus))]
        results = {f"{role} x{n}": figures(args, run_case(args, role, n), n) for role, n in cases}
    one, many = results.get("ours x1"), results.get(f"ours x{args.mailboxes}")
    if one is not None and many is not None and many is not one:
        results["scaling"] = {
            "aggregate_vs_one": _scale(one, many, "rate_per_mailbox", args.mailboxes),
            "aggregate_vs_one_by_time": _scale(one, many, "time_fraction", args.mailboxes),
            "ideal": args.mailboxes,
        }
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        print(f"budget: {args.requests} requests / {args.window:g} s, {args.upload_bytes} bytes / {args.upload_window:g} s "
              f"per mailbox; route {args.route}; {args.messages} messages per mailbox")  # fmt: skip
        for name, row in results.items():
            print(f"{name:>10}: " + ", ".join(f"{k} {v}" for k, v in row.items()))
        print(f"goals: fraction >= {GOALS['fraction']}, no 429 after the first minute, CPU/1000 <= "
              f"{GOALS['cpu_per_1000']} s, RSS x{args.mailboxes} <= {GOALS['rss_mb']} MB")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
