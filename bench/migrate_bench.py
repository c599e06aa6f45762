"""Migration benchmark: build a corpus in a private source Dovecot, migrate it, print the figures.

    .venv/bin/python bench/migrate_bench.py [--messages 5000] [--mailboxes 8] [--seed 1]
        [--imapsync PATH] [--imapsync-processes 4] [--profile FILE] [--keep] [--output text|json]

Scenarios (each full pass into a fresh target Dovecot with a fresh state dir):
  cutover, 1 mailbox, full pass, then the rerun (nothing new);
  cutover, N mailboxes with --workers N, full pass, then the rerun;
  imapsync, the same, N mailboxes with 4 processes in parallel (when an imapsync is found).
Every mailbox holds the same corpus; "CPU s" is the child's own user+sys (os.wait4), "peak RSS"
its ru_maxrss; Dovecot's CPU (source and target, from /proc) is shown for context.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
# Appended, not prepended: tests/ has modules of its own (corpus.py) that must not shadow ours.
sys.path.extend([str(REPO), str(REPO / "tests")])  # tests/servers: the suite's private Dovecot

from corpus import CorpusStats, Message, build_corpus, describe  # noqa: E402
from dovecot_lab import write_plan as lab_plan  # noqa: E402
from fill import fill_users  # noqa: E402
from measure import Measured, ParallelMeasured, run_measured, run_parallel, tree_cpu_seconds  # noqa: E402
from servers.dovecot import DovecotServer, find_dovecot  # noqa: E402

from runners.connectors.imap_common import list_folders, statuses  # noqa: E402
from runners.imap.wire import ImapConnection  # noqa: E402

MB = 1_000_000
WAVE = "bench"
SRC_ENV, DST_ENV = "SRC_MASTER_PW", "DST_MASTER_PW"  # what lab.write_plan's plans read
# The targets.
TARGET_MSGS_PER_S = 1000.0
TARGET_VS_IMAPSYNC = 3.0
IMAPSYNC_REFERENCE_MSGS_PER_S = 450.0  # the figure: 8 mailboxes, 4 processes
TARGET_RERUN_S = 0.3
TARGET_CPU_PER_1000 = 0.3
TARGET_RSS_MB = 120.0


@dataclass(slots=True)
class Row:
    scenario: str
    tool: str
    kind: str  # full | rerun
    mailboxes: int
    messages: int  # source messages the pass covered
    bytes: int
    seconds: float
    cpu_seconds: float | None
    peak_rss_mb: float | None
    dovecot_cpu_seconds: float | None = None
    target_messages: int | None = None  # counted on the target afterwards (STATUS)
    copied: int | None = None  # what the tool says it copied
    engine_seconds: float | None = None  # cutover's own "seconds" (no interpreter start-up)
    ok: bool = True
    note: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / MB / self.seconds if self.seconds else 0.0

    @property
    def cpu_per_1000(self) -> float | None:
        if self.cpu_seconds is None or not self.messages:
            return None
        return self.cpu_seconds / self.messages * 1000

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(msgs_per_s=self.msgs_per_s, mb_per_s=self.mb_per_s, cpu_per_1000=self.cpu_per_1000)
        return data


@dataclass(slots=True)
class Check:
    target: str
    value: str
    verdict: str  # PASS | MISS | n/a


@dataclass(slots=True)
class Report:
    corpus: CorpusStats
    mailboxes: int
    fill_seconds: float
    imapsync: str  # version and path, or why it was not measured
    rows: list[Row] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    environment: dict[str, str] = field(default_factory=dict)
    profile: str = ""


# --- servers and plans -----------------------------------------------------------------------


def users_for(count: int) -> list[str]:
    return [f"bench{i:02d}" for i in range(1, count + 1)]


class Lab:
    """The servers and directories of one benchmark; stops and removes them unless kept."""

    def __init__(self, keep: bool, run_settings: str = "") -> None:
        self.keep = keep
        #: Extra ``[run]`` lines for every plan (``--batch-bytes``, ``--batch-messages``).
        self.run_settings = run_settings
        self.workdir = Path(tempfile.mkdtemp(prefix="cutover-bench-"))
        self.servers: list[DovecotServer] = []

    def dovecot(self, users: Sequence[str]) -> DovecotServer:
        server = DovecotServer()
        for user in users:
            server.add_user(user, f"{user}-pw")
        self.servers.append(server)
        return server.start()

    def retire(self, server: DovecotServer) -> None:
        """A target is done: free its disk now (8 x 5,000 messages is over a gigabyte)."""
        if not self.keep:
            server.stop()

    def hold(self) -> None:
        """--keep: leave everything up for inspection until Ctrl-C.

        The test servers die with the process that started them (so a crashed run leaves none
        behind): the benchmark has to stay alive for them to stay up.
        """
        print(f"\nkept: work dir {self.workdir} (plans, state, logs; stays after exit)", file=sys.stderr)
        for server in self.servers:
            if server.running:
                print(
                    f"kept: dovecot {server.root} imap port {server.imap_port} "
                    f"(master {server.master_user} / {server.master_password})",
                    file=sys.stderr,
                )
        print("servers up until Ctrl-C", file=sys.stderr)
        with contextlib.suppress(KeyboardInterrupt):
            while True:
                time.sleep(3600)

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def master_pid(server: DovecotServer) -> int:
    assert server.root is not None
    return int((server.root / "run" / "master.pid").read_text().strip())


def dovecot_cpu(servers: Sequence[DovecotServer]) -> float:
    return sum(tree_cpu_seconds(master_pid(s)) for s in servers if s.running)


def write_plan(
    directory: Path,
    source: DovecotServer,
    target: DovecotServer,
    users: Sequence[str],
    run_settings: str = "",
) -> Path:
    """The engine tests' plan (tests/dovecot_lab.py), with connections for every worker and a state dir."""
    connections = f"max_connections = {max(10, len(users) * 2)}"
    return lab_plan(
        directory,
        source,
        target,
        mailboxes=tuple((u, u, WAVE) for u in users),
        source_extra=connections,
        target_extra=connections,
        tail=f'[state]\ndir = "state"\n\n[run]\nworkers = {len(users)}\n{run_settings}',
    )


def count_messages(server: DovecotServer, user: str) -> int:
    """Messages in every selectable folder of ``user`` (what actually arrived)."""
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=60)
    conn.connect()
    try:
        conn.authenticate_plain(server.master_user, server.master_password, authzid=user)
        names = [n for n, _sep, attrs in list_folders(conn) if "\\noselect" not in {a.lower() for a in attrs}]
        return sum(s.messages for s in statuses(conn, names) if not isinstance(s, Exception))
    finally:
        conn.close()


# --- cutover -----------------------------------------------------------------------------------


def cutover_args(plan: Path, workers: int) -> list[str]:
    return ["run", "--plan", str(plan), "--wave", WAVE, "--output", "json", "--progress", "none",
            "--workers", str(workers)]  # fmt: skip


def cutover_argv(plan: Path, workers: int) -> list[str]:
    exe = Path(sys.executable).with_name("cutover")
    base = [str(exe)] if exe.exists() else [sys.executable, "-m", "cockpit.cli"]
    return [*base, *cutover_args(plan, workers)]


def parse_summary(measured: Measured) -> dict[str, Any]:
    try:
        data = json.loads(measured.stdout)
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def cutover_row(
    scenario: str, kind: str, users: Sequence[str], corpus: CorpusStats, measured: Measured, dovecot_s: float
) -> Row:
    summary = parse_summary(measured)
    totals = summary.get("totals", {})
    row = Row(
        scenario=scenario,
        tool="cutover",
        kind=kind,
        mailboxes=len(users),
        messages=corpus.messages * len(users),
        bytes=corpus.total_bytes * len(users),
        seconds=measured.wall,
        cpu_seconds=measured.cpu,
        peak_rss_mb=measured.max_rss_kb * 1024 / MB,
        dovecot_cpu_seconds=dovecot_s,
        copied=totals.get("copied"),
        engine_seconds=summary.get("seconds"),
    )
    problems = cutover_problems(measured, summary, corpus, len(users), kind)
    row.ok, row.note = not problems, "; ".join(problems)
    return row


def cutover_problems(
    measured: Measured, summary: dict[str, Any], corpus: CorpusStats, mailboxes: int, kind: str
) -> list[str]:
    """What in cutover's own summary does not add up for this corpus."""
    problems: list[str] = []
    if measured.returncode != 0:
        problems.append(f"exit {measured.returncode}: {_tail(measured.stderr)}")
    if not summary:
        problems.append("no JSON summary")
        return problems
    totals = summary.get("totals", {})
    if summary.get("status") != "ok":
        problems.append(f"status {summary.get('status')}")
    if totals.get("messages_total") != corpus.messages * mailboxes:
        problems.append(f"messages_total {totals.get('messages_total')} != {corpus.messages * mailboxes}")
    for key in ("skipped", "failed", "reconnects"):
        if totals.get(key):
            problems.append(f"{key} {totals[key]}")
    if kind == "rerun" and totals.get("copied"):
        problems.append(f"rerun copied {totals['copied']}")
    return problems


def run_cutover(
    lab: Lab, source: DovecotServer, users: Sequence[str], corpus: CorpusStats, label: str
) -> list[Row]:
    target = lab.dovecot(users)
    plan = write_plan(lab.workdir / f"plan-{label}", source, target, users, lab.run_settings)
    env = bench_env(lab, source, target)
    rows: list[Row] = []
    for kind in ("full", "rerun"):
        before = dovecot_cpu([source, target])
        measured = run_measured(
            cutover_argv(plan, len(users)), env, lab.workdir / "logs", f"cutover-{label}-{kind}"
        )
        row = cutover_row(
            f"cutover {label} {kind}", kind, users, corpus, measured, dovecot_cpu([source, target]) - before
        )
        row.target_messages = sum(count_messages(target, u) for u in users)
        rows.append(row)
        print(
            f"  {row.scenario}: {row.seconds:.2f} s{' -- ' + row.note if row.note else ''}", file=sys.stderr
        )
    lab.retire(target)
    return rows


def python_env(lab: Lab) -> dict[str, str]:
    """Children keep their bytecode, as an installed cutover does.

    Without it (PYTHONDONTWRITEBYTECODE is set in some shells and CI images) every run compiles
    each module again, some 40-60 ms that no user pays. The cache lives in the work dir, not in
    the source tree.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(lab.workdir / "pycache")
    return env


def warm_bytecode(lab: Lab) -> None:
    """Import what ``cutover run`` imports once, so the first measured run doesn't compile it."""
    modules = "cockpit.cli, cockpit.commands.run, concurrent.futures.thread, runners.state.read_models.status"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=python_env(lab), check=True)


def bench_env(lab: Lab, source: DovecotServer, target: DovecotServer) -> dict[str, str]:
    return {**python_env(lab), SRC_ENV: source.master_password, DST_ENV: target.master_password}


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:])


# --- imapsync ----------------------------------------------------------------------------------


def find_imapsync(given: str | None) -> str | None:
    if given:
        return given if os.access(given, os.X_OK) else None
    return shutil.which("imapsync")


def imapsync_version(path: str) -> str:
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=60, check=False)
    except OSError as exc:
        return f"unusable ({exc})"
    return out.stdout.strip() or out.stderr.strip()


def imapsync_argv(path: str, source: DovecotServer, target: DovecotServer, user: str, tmp: Path) -> list[str]:
    """One mailbox, plaintext loopback, master logins (SASL PLAIN authzid), no network look-ups."""
    return [path,
            "--host1", source.host, "--port1", str(source.imap_port), "--user1", user,
            "--authuser1", source.master_user, "--password1", source.master_password,
            "--host2", target.host, "--port2", str(target.imap_port), "--user2", user,
            "--authuser2", target.master_user, "--password2", target.master_password,
            "--nossl1", "--nossl2", "--notls1", "--notls2",
            "--noreleasecheck", "--nofoldersizes", "--nofoldersizesatend", "--nolog",
            "--tmpdir", str(tmp / user), "--pidfile", str(tmp / f"{user}.pid")]  # fmt: skip


def _user_of(argv: Sequence[str]) -> str:
    return argv[argv.index("--user1") + 1] if "--user1" in argv else "?"


_TRANSFERRED = re.compile(r"Messages transferred\s*:\s*(\d+)")


def imapsync_copied(runs: Sequence[Measured]) -> int | None:
    found = [_TRANSFERRED.search(r.stdout) for r in runs]
    return sum(int(m.group(1)) for m in found if m) if all(found) else None


def run_imapsync(
    lab: Lab,
    path: str,
    source: DovecotServer,
    users: Sequence[str],
    corpus: CorpusStats,
    label: str,
    processes: int,
) -> list[Row]:
    target = lab.dovecot(users)
    env = bench_env(lab, source, target)
    rows: list[Row] = []
    for kind in ("full", "rerun"):
        tmp = lab.workdir / f"imapsync-{label}-{kind}"
        jobs = [(f"imapsync-{label}-{kind}-{u}", imapsync_argv(path, source, target, u, tmp)) for u in users]
        before = dovecot_cpu([source, target])
        result = run_parallel(jobs, env, lab.workdir / "logs", processes)
        rows.append(
            imapsync_row(
                f"imapsync {label} {kind}",
                kind,
                users,
                corpus,
                result,
                dovecot_cpu([source, target]) - before,
            )
        )
        rows[-1].target_messages = sum(count_messages(target, u) for u in users)
        print(f"  {rows[-1].scenario}: {rows[-1].seconds:.2f} s", file=sys.stderr)
    lab.retire(target)
    return rows


def imapsync_row(
    scenario: str,
    kind: str,
    users: Sequence[str],
    corpus: CorpusStats,
    result: ParallelMeasured,
    dovecot_s: float,
) -> Row:
    problems = [f"{_user_of(r.argv)}: exit {r.returncode}: {_tail(r.stdout)}" for r in result.failed]
    return Row(
        scenario=scenario + (f" ({result.parallel} processes)" if len(users) > 1 else ""),
        tool="imapsync",
        kind=kind,
        mailboxes=len(users),
        messages=corpus.messages * len(users),
        bytes=corpus.total_bytes * len(users),
        seconds=result.wall,
        cpu_seconds=result.cpu,
        peak_rss_mb=result.max_rss_kb * 1024 / MB,
        dovecot_cpu_seconds=dovecot_s,
        copied=imapsync_copied(result.runs),
        ok=not problems,
        note="; ".join(problems),
    )


# --- profile -------------------------------------------------------------------------------------


def run_profile(lab: Lab, source: DovecotServer, user: str, out: Path, timer: str) -> str:
    """One 1-mailbox full pass under bench/profile_run.py; returns the top-15 summary."""
    import io
    import pstats

    target = lab.dovecot([user])
    plan = write_plan(lab.workdir / f"plan-profile-{timer}", source, target, [user], lab.run_settings)
    argv = [sys.executable, str(Path(__file__).with_name("profile_run.py")), "-o", str(out), "--timer", timer,
            "--", *cutover_args(plan, 1)]  # fmt: skip
    measured = run_measured(argv, bench_env(lab, source, target), lab.workdir / "logs", f"profile-{timer}")
    lab.retire(target)
    if measured.returncode != 0 or not out.exists():
        return f"profiling failed (exit {measured.returncode}): {_tail(measured.stderr)}"
    text = io.StringIO()
    stats = pstats.Stats(str(out), stream=text)
    stats.strip_dirs()
    text.write(f"profile ({timer} time, all threads) of a 1-mailbox full pass: {measured.wall:.2f} s wall\n")
    stats.sort_stats("cumulative").print_stats(15)
    stats.sort_stats("tottime").print_stats(15)
    return text.getvalue()


# --- targets and output ----------------------------------------------------------------------------


def find_row(rows: Sequence[Row], tool: str, kind: str, many: bool) -> Row | None:
    return next((r for r in rows if r.tool == tool and r.kind == kind and (r.mailboxes > 1) == many), None)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def checks(rows: Sequence[Row]) -> list[Check]:
    out: list[Check] = []
    one, many = find_row(rows, "cutover", "full", False), find_row(rows, "cutover", "full", True)
    if one:
        out.append(Check(f">= {TARGET_MSGS_PER_S:,.0f} msg/s, 1 mailbox", f"{one.msgs_per_s:,.0f} msg/s",
                         verdict(one.ok and one.msgs_per_s >= TARGET_MSGS_PER_S)))  # fmt: skip
    if many:
        out.append(vs_imapsync(many, find_row(rows, "imapsync", "full", True)))
    for rerun in (find_row(rows, "cutover", "rerun", False), find_row(rows, "cutover", "rerun", True)):
        if rerun:
            engine = f" (engine {rerun.engine_seconds:.3f} s)" if rerun.engine_seconds is not None else ""
            out.append(Check(f"rerun < {TARGET_RERUN_S} s, {rerun.mailboxes} mailbox(es)",
                             f"{rerun.seconds:.3f} s{engine}", verdict(rerun.ok and rerun.seconds < TARGET_RERUN_S)))  # fmt: skip
    for row in (one, many):
        if row and row.cpu_per_1000 is not None:
            out.append(Check(f"<= {TARGET_CPU_PER_1000} CPU s per 1,000 msgs, {row.mailboxes} mailbox(es)",
                             f"{row.cpu_per_1000:.3f} s", verdict(row.cpu_per_1000 <= TARGET_CPU_PER_1000)))  # fmt: skip
    if many and many.peak_rss_mb is not None:
        out.append(Check(f"< {TARGET_RSS_MB:.0f} MB peak RSS, {many.mailboxes} mailboxes at once",
                         f"{many.peak_rss_mb:.1f} MB", verdict(many.peak_rss_mb < TARGET_RSS_MB)))  # fmt: skip
    return out


def vs_imapsync(ours: Row, theirs: Row | None) -> Check:
    name = f">= {TARGET_VS_IMAPSYNC:.0f}x imapsync's aggregate, {ours.mailboxes} mailboxes"
    if theirs is None or not theirs.ok:
        # Not measured here: compare with the reference figure instead.
        reference = IMAPSYNC_REFERENCE_MSGS_PER_S
        value = f"{ours.msgs_per_s:,.0f} msg/s vs reference {reference:.0f} msg/s (imapsync not measured)"
    else:
        reference = theirs.msgs_per_s
        value = f"{ours.msgs_per_s:,.0f} vs {reference:,.0f} msg/s = {ours.msgs_per_s / reference:.1f}x"
    return Check(name, value, verdict(ours.ok and ours.msgs_per_s >= TARGET_VS_IMAPSYNC * reference))


def _fmt(value: float | int | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


_COLUMNS = ("scenario", "messages", "MB", "seconds", "msg/s", "MB/s", "CPU s (ours)", "CPU s/1k msgs",
            "peak RSS MB", "dovecot CPU s", "on target")  # fmt: skip


def table_cells(row: Row) -> list[str]:
    full = row.kind == "full"
    return [
        row.scenario + ("" if row.ok else " [!]"),
        f"{row.messages:,}",
        f"{row.bytes / MB:,.1f}",
        f"{row.seconds:.3f}",
        f"{row.msgs_per_s:,.0f}" if full else "-",
        f"{row.mb_per_s:.1f}" if full else "-",
        _fmt(row.cpu_seconds, ".2f"),
        _fmt(row.cpu_per_1000, ".3f"),
        _fmt(row.peak_rss_mb, ".1f"),
        _fmt(row.dovecot_cpu_seconds, ".2f"),
        _fmt(row.target_messages, ","),
    ]


def render_table(rows: Sequence[Row]) -> str:
    grid = [list(_COLUMNS), *(table_cells(r) for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(_COLUMNS))]
    lines = [
        " | ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in grid
    ]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def render_text(report: Report) -> str:
    c = report.corpus
    folders = ", ".join(f"{name} {n}" for name, n in sorted(c.folders.items()))
    lines = [
        f"corpus: {c.messages:,} messages per mailbox, {c.total_bytes / MB:.1f} MB, median {c.median_bytes:,} B, "
        f"min {c.min_bytes:,} B, max {c.max_bytes:,} B; {c.duplicates} byte-identical duplicates, "
        f"{c.without_message_id} without Message-ID",
        f"folders: {folders}",
        f"source: {report.mailboxes} mailbox(es) x the same corpus, filled in {report.fill_seconds:.1f} s "
        f"({c.messages * report.mailboxes / max(report.fill_seconds, 1e-9):,.0f} msg/s, MULTIAPPEND)",
        f"imapsync: {report.imapsync}",
        "environment: " + ", ".join(f"{k} {v}" for k, v in report.environment.items()),
        "",
        render_table(report.rows),
        "",
    ]
    notes = [f"[!] {r.scenario}: {r.note}" for r in report.rows if r.note]
    copied = [f"{r.scenario}: tool reports {r.copied:,} copied" for r in report.rows if r.copied is not None]
    lines += notes + copied + ["", "targets:"]
    lines += [f"  {ch.verdict:<4}  {ch.target:<48} {ch.value}" for ch in report.checks]
    if report.profile:
        lines += ["", report.profile]
    return "\n".join(lines)


def render_json(report: Report) -> str:
    data = {
        "corpus": asdict(report.corpus),
        "mailboxes": report.mailboxes,
        "fill_seconds": report.fill_seconds,
        "imapsync": report.imapsync,
        "environment": report.environment,
        "rows": [r.as_dict() for r in report.rows],
        "targets": [asdict(ch) for ch in report.checks],
        "profile": report.profile,
    }
    return json.dumps(data, indent=2)


# --- main ----------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000, help="messages per mailbox (default 5000)")
    parser.add_argument("--mailboxes", type=int, default=8, help="mailboxes of the parallel case (default 8)")
    parser.add_argument("--seed", type=int, default=1, help="corpus seed (default 1)")
    parser.add_argument(
        "--batch-bytes", type=int, help="[run] batch_bytes of our runs (default: the plan default)"
    )
    parser.add_argument(
        "--batch-messages", type=int, help="[run] batch_messages of our runs (default: the plan default)"
    )
    parser.add_argument("--imapsync", help="imapsync to compare with (default: the one on PATH, if any)")
    parser.add_argument("--no-imapsync", action="store_true", help="do not run imapsync even if found")
    parser.add_argument(
        "--imapsync-processes", type=int, default=4, help="parallel imapsync processes (default 4)"
    )
    parser.add_argument(
        "--profile", metavar="FILE", help="also profile a 1-mailbox pass into this pstats file"
    )
    parser.add_argument("--profile-timer", choices=("cpu", "wall"), default="cpu")
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the servers up (until Ctrl-C) and the work dir for inspection",
    )
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args(argv)
    if args.messages < 1 or args.mailboxes < 1:
        parser.error("--messages and --mailboxes must be at least 1")
    return args


def environment() -> dict[str, str]:
    dovecot = find_dovecot() or "dovecot"
    version = subprocess.run(
        [dovecot, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {"cpus": str(os.cpu_count()), "python": sys.version.split()[0], "dovecot": version}


def imapsync_choice(args: argparse.Namespace) -> tuple[str | None, str]:
    if args.no_imapsync:
        return None, "not measured (--no-imapsync)"
    path = find_imapsync(args.imapsync)
    if path is None:
        where = args.imapsync or "PATH"
        return None, f"not measured: no executable imapsync at {where}"
    return path, f"{imapsync_version(path)} ({path})"


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the finally blocks stop every Dovecot we started."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fill_source(lab: Lab, corpus: list[Message], users: Sequence[str]) -> tuple[DovecotServer, float]:
    source = lab.dovecot(users)
    started = time.perf_counter()
    fill_users(source.host, source.imap_port, source.master_user, source.master_password,
               dict.fromkeys(users, corpus))  # fmt: skip
    return source, time.perf_counter() - started


def scenario_sets(users: Sequence[str]) -> list[tuple[str, Sequence[str]]]:
    """One mailbox, then all of them (when there is more than one)."""
    sets: list[tuple[str, Sequence[str]]] = [("1 mailbox", users[:1])]
    if len(users) > 1:
        sets.append((f"{len(users)} mailboxes", users))
    return sets


def run(args: argparse.Namespace, lab: Lab) -> Report:
    imapsync, imapsync_text = imapsync_choice(args)
    print(f"building the corpus: {args.messages:,} messages, seed {args.seed}", file=sys.stderr)
    corpus = build_corpus(args.messages, args.seed)
    stats = describe(corpus)
    users = users_for(args.mailboxes)
    print(f"filling {len(users)} mailbox(es) of the source", file=sys.stderr)
    source, fill_seconds = fill_source(lab, corpus, users)
    report = Report(stats, len(users), fill_seconds, imapsync_text, environment=environment())
    warm_bytecode(lab)
    for label, chosen in scenario_sets(users):
        report.rows += run_cutover(lab, source, chosen, stats, label)
    for label, chosen in scenario_sets(users) if imapsync else ():
        assert imapsync is not None
        report.rows += run_imapsync(lab, imapsync, source, chosen, stats, label, args.imapsync_processes)
    report.checks = checks(report.rows)
    if args.profile:
        report.profile = run_profile(lab, source, users[0], Path(args.profile), args.profile_timer)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if find_dovecot() is None:
        print("dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)", file=sys.stderr)
        return 2
    settings = "".join(
        f"{key} = {value}\n"
        for key, value in (("batch_bytes", args.batch_bytes), ("batch_messages", args.batch_messages))
        if value is not None
    )
    lab = Lab(args.keep, settings)
    try:
        with terminate_as_interrupt():
            report = run(args, lab)
            print(render_json(report) if args.output == "json" else render_text(report), flush=True)
            if args.keep:
                lab.hold()
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        lab.close()
    return 0 if all(r.ok for r in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
