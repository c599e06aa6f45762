"""Fleet benchmark (#13): 4 runner processes on one PostgreSQL against 1 runner on SQLite, and what the
state store itself costs per 1,000 messages on each backend.

    .venv/bin/python bench/fleet_bench.py [--messages 5000] [--mailboxes 8] [--runners 4] [--workers 8]
        [--seed 1] [--rounds 1] [--output text|json]

Scenarios (every one a full pass into a fresh target Dovecot, from one source filled once):
  sqlite, 1 runner:   ``cutover run --workers W`` on a SQLite store;
  postgresql, N runners: N-1 ``cutover runner`` processes and the launching ``cutover run``, W workers
                      in all (W/N each), on a private PostgreSQL with fsync on (a real server's
                      durability, as SQLite's ``synchronous=FULL``);
  store cost:         the same pass in this process, one worker (so no time is another worker's wait
                      for the write lock), the store's backend wrapped in a counter
                      (``runners.state.counting``): statements and milliseconds in the database
                      (statements, BEGIN, COMMIT) per 1,000 messages copied, on each backend.
With ``--rounds N`` the two passes run N times, PostgreSQL first in every other round, and the
ratio is the median of each round's own.
msg/s is messages over the launch's wall time (from its start to the end of the run). Each pass
also says whose CPU it took, per 1,000 messages: ours (every runner process, start to exit), the
PostgreSQL server's, and the two Dovecots' (source and target): on two cores shared by all of them,
CPU one of them spends is messages the others don't move. The default mailbox is the issue's
(5,000 messages): a pass of a few seconds mostly measures the runners' start and their noticing the
launch. The load average before and after is printed: on a shared machine the figures move with it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO), str(REPO / "tests")])

from corpus import build_corpus, describe  # noqa: E402
from measure import tree_cpu_seconds  # noqa: E402
from migrate_bench import Lab, bench_env, count_messages, dovecot_cpu, fill_source, users_for, warm_bytecode  # noqa: E402
from migrate_bench import write_plan as bench_plan  # noqa: E402
from servers.dovecot import DovecotServer, find_dovecot  # noqa: E402
from servers.postgres import PASSWORD, PASSWORD_ENV, PostgresServer, find_postgres  # noqa: E402

WAVE = "bench"
#: The issue's goal: the fleet on PostgreSQL loses nothing against one runner on SQLite.
GOAL_RATIO = 0.9


class DurablePostgres(PostgresServer):
    """The tests' private cluster, with fsync and synchronous commit on: what a real server does."""

    def _argv(self, binary: str) -> list[str]:
        argv = super()._argv(binary)
        for off in ("fsync=off", "synchronous_commit=off", "full_page_writes=off"):
            argv[argv.index(off)] = off.replace("=off", "=on")
        return argv

    def cpu_seconds(self) -> float:
        """CPU of the server's processes so far (ended backends counted through the postmaster)."""
        pid = int((self._dir / "data" / "postmaster.pid").read_text().split()[0])
        return tree_cpu_seconds(pid)


@dataclass(slots=True)
class Throughput:
    scenario: str
    processes: int
    workers: int
    messages: int
    seconds: float
    target_messages: int
    ok: bool
    note: str = ""
    #: CPU seconds over the pass: our processes, the PostgreSQL server, the source and target Dovecots.
    cpu_ours: float = 0.0
    cpu_postgres: float = 0.0
    cpu_dovecot: float = 0.0

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


@dataclass(slots=True)
class StoreCost:
    backend: str
    copied: int
    statements: int
    transactions: int
    store_ms: float
    seconds: float

    @property
    def per_1000(self) -> tuple[float, float]:
        """Statements and store milliseconds per 1,000 messages copied."""
        scale = 1000 / self.copied if self.copied else 0.0
        return self.statements * scale, self.store_ms * scale


def cutover(*args: str) -> list[str]:
    return [sys.executable, "-m", "cockpit.cli", *args]


def plan_for(lab: Lab, name: str, source: DovecotServer, target: DovecotServer, users: Sequence[str],
             workers: int, pg_url: str | None) -> Path:  # fmt: skip
    settings = "[runner]\nlease_seconds = 30\n"
    plan = bench_plan(lab.workdir / name, source, target, users, lab.run_settings)
    text = plan.read_text().replace(f"workers = {len(users)}", f"workers = {workers}")
    if pg_url:
        text = text.replace(
            '[state]\ndir = "state"', f'[state]\nurl = "{pg_url}"\npassword = "env:{PASSWORD_ENV}"'
        )
    plan.write_text(text + "\n" + settings)
    return plan


def wait_registered(plan: Path, env: dict[str, str], names: Sequence[str]) -> None:
    """Until every runner has registered in the store (ready to take work), at most a minute."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = subprocess.run(cutover("status", "--plan", str(plan), "--output", "json"), env=env,
                              capture_output=True, text=True, check=False)  # fmt: skip
        hosts = json.loads(done.stdout or "{}").get("hosts", []) if done.stdout.startswith("{") else []
        if {h["name"] for h in hosts if h["state"] in ("idle", "working")} >= set(names):
            return
        time.sleep(0.2)
    raise RuntimeError(f"runners {', '.join(names)} did not register within a minute")


def fleet_pass(lab: Lab, source: DovecotServer, users: Sequence[str], messages: int, *, runners: int,
               workers: int, pg_url: str | None, label: str,
               postgres: DurablePostgres | None = None, round_no: int = 0) -> Throughput:  # fmt: skip
    target = lab.dovecot(users)
    each = max(1, workers // runners)
    plan = plan_for(lab, f"{label} {round_no}", source, target, users, each, pg_url)  # a state of its own
    env = bench_env(lab, source, target) | ({PASSWORD_ENV: PASSWORD} if pg_url else {})
    names = [f"bench-r{n}" for n in range(1, runners)]
    procs = [
        subprocess.Popen(
            cutover("runner", "--plan", str(plan), "--name", n, "--workers", str(each)),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for n in names
    ]
    try:
        if names:
            wait_registered(plan, env, names)
        ours_before = _children_cpu()  # the status calls above are not the pass's
        servers_before = dovecot_cpu([source, target]), postgres.cpu_seconds() if postgres else 0.0
        started = time.perf_counter()
        done = subprocess.run(
            cutover("run", "--plan", str(plan), "--wave", WAVE, "--output", "json", "--progress", "none",
                    "--workers", str(each)),
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        seconds = time.perf_counter() - started
        servers_after = dovecot_cpu([source, target]), postgres.cpu_seconds() if postgres else 0.0
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=120)
    ours = _children_cpu() - ours_before  # the runners from their start, the launch from spawn to exit
    arrived = sum(count_messages(target, u) for u in users)
    summary = json.loads(done.stdout) if done.stdout.startswith("{") else {}
    ok = done.returncode == 0 and summary.get("status") == "ok" and arrived == messages
    note = "" if ok else f"exit {done.returncode}, status {summary.get('status')}, {arrived} arrived"
    lab.retire(target)
    row = Throughput(label, runners, each * runners, messages, seconds, arrived, ok, note, ours,
                     servers_after[1] - servers_before[1], servers_after[0] - servers_before[0])  # fmt: skip
    print(
        f"  {label}: {row.msgs_per_s:.0f} msg/s ({seconds:.2f} s){' -- ' + note if note else ''}",
        file=sys.stderr,
    )
    return row


def _children_cpu() -> float:
    """User and system CPU of the child processes this one has waited for."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def store_cost(lab: Lab, source: DovecotServer, users: Sequence[str], workers: int, pg_url: str | None,
               label: str) -> StoreCost:  # fmt: skip
    """One pass in this process, the store's backend wrapped in a counter."""
    from runners.engine import wave as wave_module
    from runners.plan.loader import load_plan
    from runners.state.counting import CountingBackend, StatementCount
    from runners.state.open_store import store_backend
    from runners.state.store import StateStore

    target = lab.dovecot(users)
    plan_path = plan_for(lab, label, source, target, users, workers, pg_url)
    os.environ.update(bench_env(lab, source, target))
    if pg_url:
        os.environ[PASSWORD_ENV] = PASSWORD
    count = StatementCount()

    def counted(plan: Any, *, read_only: bool = False) -> StateStore:
        return StateStore(CountingBackend(store_backend(plan, read_only=read_only), count))  # type: ignore[arg-type]

    original = wave_module.open_store
    wave_module.open_store = counted  # type: ignore[assignment]
    try:
        started = time.perf_counter()
        result = wave_module.run_wave(load_plan(plan_path), WAVE, workers=workers)
        seconds = time.perf_counter() - started
    finally:
        wave_module.open_store = original
    lab.retire(target)
    copied = result.stats.totals()["copied"]
    row = StoreCost(label, int(copied), count.statements, count.transactions, count.seconds * 1000, seconds)
    statements, ms = row.per_1000
    print(
        f"  store cost {label}: {statements:.0f} statements, {ms:.0f} ms per 1,000 messages", file=sys.stderr
    )
    return row


def load() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def render_text(report: dict[str, Any]) -> str:
    lines = [f"corpus: {report['messages']:,} messages in {report['mailboxes']} mailboxes; "
             f"{os.cpu_count()} cores; load average before {report['load_before']}, after {report['load_after']}",
             "", f"{'scenario':<28} {'processes':>9} {'workers':>7} {'msg/s':>8} {'seconds':>8}  ok"]  # fmt: skip
    for row in report["throughput"]:
        rate = row["messages"] / row["seconds"] if row["seconds"] else 0.0
        lines.append(f"{row['scenario']:<28} {row['processes']:>9} {row['workers']:>7} {rate:>8.0f} "
                     f"{row['seconds']:>8.2f}  {'yes' if row['ok'] else 'NO ' + row['note']}")  # fmt: skip
    rounds = ", ".join(f"{r:.2f}" for r in report["round_ratios"])
    lines.append(f"fleet / single: {report['ratio']:.2f}x, the median of the rounds' own ({rounds}) (goal >= {GOAL_RATIO}x): "
                 f"{'met' if report['ratio'] >= GOAL_RATIO else 'NOT met'}")  # fmt: skip
    lines += [
        "",
        f"{'CPU s per 1,000 messages':<28} {'ours':>8} {'postgresql':>10} {'dovecots':>9} {'all':>8}",
    ]
    for row in report["throughput"]:
        scale = 1000 / row["messages"] if row["messages"] else 0.0
        parts = [row["cpu_ours"], row["cpu_postgres"], row["cpu_dovecot"]]
        lines.append(f"{row['scenario']:<28} {parts[0] * scale:>8.3f} {parts[1] * scale:>10.3f} "
                     f"{parts[2] * scale:>9.3f} {sum(parts) * scale:>8.3f}")  # fmt: skip
    lines += ["", f"{'store cost per 1,000 messages':<32} {'statements':>10} {'ms':>8} {'transactions':>12}"]
    for cost in report["store_cost"]:
        scale = 1000 / cost["copied"] if cost["copied"] else 0.0
        lines.append(f"{cost['backend']:<32} {cost['statements'] * scale:>10.0f} {cost['store_ms'] * scale:>8.0f} "
                     f"{cost['transactions'] * scale:>12.0f}")  # fmt: skip
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages per mailbox")
    parser.add_argument("--mailboxes", type=int, default=8)
    parser.add_argument("--runners", type=int, default=4, help="runner processes on PostgreSQL")
    parser.add_argument("--workers", type=int, default=8, help="workers in all, in every scenario")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1,
                        help="pairs of passes (PostgreSQL first in every other pair); the ratio is the median of "
                             "each pair's own")  # fmt: skip
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if find_dovecot() is None or find_postgres() is None:
        print("dovecot and postgresql must be installed (./scripts/setup --test)", file=sys.stderr)
        return 2
    lab = Lab(keep=False)
    postgres = DurablePostgres()
    try:
        postgres.start()
        corpus = build_corpus(args.messages, args.seed)
        users = users_for(args.mailboxes)
        total = describe(corpus).messages * len(users)
        print(f"filling {len(users)} mailbox(es) with {args.messages} messages each", file=sys.stderr)
        source, _ = fill_source(lab, corpus, users)
        warm_bytecode(lab)
        before = load()
        rows: list[Throughput] = []
        ratios: list[float] = []
        for n in range(args.rounds):
            # Whichever pass comes second costs the Dovecots more (measured: their CPU per message
            # rises from pass to pass, fresh target or not), so every other round runs PostgreSQL first.
            fleet_first = n % 2 == 1
            pair: dict[bool, Throughput] = {}
            for fleet in (fleet_first, not fleet_first):
                pair[fleet] = (
                    fleet_pass(lab, source, users, total, runners=args.runners, workers=args.workers,
                               pg_url=postgres.url(postgres.database(f"fleet{n}")),
                               label=f"postgresql, {args.runners} runners", postgres=postgres, round_no=n)
                    if fleet
                    else fleet_pass(lab, source, users, total, runners=1, workers=args.workers, pg_url=None,
                                    label="sqlite, 1 runner", round_no=n)
                )  # fmt: skip
                rows.append(pair[fleet])
            single_rate = pair[False].msgs_per_s
            ratios.append(pair[True].msgs_per_s / single_rate if single_rate else 0.0)
        costs = [
            store_cost(lab, source, users, 1, None, "sqlite"),
            store_cost(lab, source, users, 1, postgres.url(postgres.database("cost")), "postgresql"),
        ]
        report = {
            "messages": total,
            "mailboxes": len(users),
            "load_before": before,
            "load_after": load(),
            "throughput": [asdict(row) | {"msgs_per_s": row.msgs_per_s} for row in rows],
            "round_ratios": ratios,
            "ratio": statistics.median(ratios),
            "store_cost": [asdict(c) for c in costs],
        }
        print(json.dumps(report, indent=2) if args.output == "json" else render_text(report))
        return 0 if all(row.ok for row in rows) else 1
    finally:
        postgres.stop()
        lab.close()


if __name__ == "__main__":
    sys.exit(main())
