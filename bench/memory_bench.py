"""Memory against folder size: peak RSS of ``cutover run`` over one folder of 10,000, 100,000 and
500,000 small messages, and of 8 workers at once.

    .venv/bin/python bench/memory_bench.py [--sizes 10000,100000,500000] [--mailboxes 8]
        [--per-mailbox 10000] [--workers-only | --sizes-only] [--output text|json]

Both Dovecots keep their mail on a tmpfs (``/dev/shm``), the targets as mdbox (a Maildir folder
slows down past some 100,000 messages, Dovecot's not ours): the source is filled by writing Maildir
files straight into it (``,S=<size>`` in the name, the arrival date as mtime, flags after ``:2,``),
which is some 30,000 messages a second, then opened once over IMAP so that Dovecot's own indexing
is not in the measured run. Each measured run is a full first pass into a fresh target, through
``launch.py`` (its own ``ru_maxrss``, CPU and wall time). Goal (issue 13): the peak RSS of the
three folder sizes within 10 % of each other, and under 120 MB with 8 workers at once.

To measure another checkout's engine, put it first: ``PYTHONPATH=/path/to/checkout``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO), str(REPO / "tests")])

from measure import run_measured  # noqa: E402
from migrate_bench import bench_env, count_messages, cutover_argv, warm_bytecode, write_plan  # noqa: E402
from servers.dovecot import DovecotServer, find_dovecot  # noqa: E402

from runners.imap.wire import ImapConnection  # noqa: E402

MB = 1_000_000
TARGET_SPREAD = 0.10
TARGET_RSS_MB = 120.0
FLAGS = ("S", "", "FS", "RS", "S", "")


@dataclass(slots=True)
class Row:
    scenario: str
    mailboxes: int
    messages: int
    seconds: float
    cpu_user: float
    cpu_sys: float
    peak_rss_mb: float
    on_target: int
    ok: bool
    note: str = ""

    @property
    def msgs_per_s(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0


class ShmLab:
    """Dovecots whose mail lives on a tmpfs, removed at the end."""

    def __init__(self) -> None:
        self.shm = Path(tempfile.mkdtemp(prefix="cutover-mem-", dir="/dev/shm"))
        self.shm.chmod(0o711)  # the mail processes (not root) go through it
        self.workdir = Path(tempfile.mkdtemp(prefix="cutover-mem-"))
        self.servers: list[DovecotServer] = []

    def dovecot(self, name: str, users: Sequence[str], store: str = "maildir") -> DovecotServer:
        """``store``: the source's is Maildir (filled as files); a target's mdbox, which takes half a
        million APPENDs into one folder without slowing down as a Maildir folder does."""
        root = self.shm / name
        root.mkdir()
        location = f"maildir:{root}/%u/Maildir" if store == "maildir" else f"mdbox:{root}/%u/mdbox"
        server = DovecotServer(mail_location=location)
        account = server._account  # the uid Dovecot's mail processes run as
        os.chown(root, account.uid, account.gid)
        for user in users:
            server.add_user(user, f"{user}-pw")
        self.servers.append(server)
        server.start()
        return server

    def close(self) -> None:
        for server in self.servers:
            server.stop()
        shutil.rmtree(self.shm, ignore_errors=True)
        shutil.rmtree(self.workdir, ignore_errors=True)


def small_message(user: str, n: int) -> bytes:
    return (
        f"From: sender{n % 97}@example.org\r\nTo: {user}@example.net\r\n"
        f"Subject: small message {n}\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n"
        f"Message-ID: <{user}.{n}@bench.example>\r\n\r\n"
        f"Message {n} of the memory benchmark.\r\n"
    ).encode()


def fill_maildir(server: DovecotServer, user: str, count: int) -> None:
    """``count`` messages in ``user``'s INBOX, written as Maildir files, then indexed by Dovecot."""
    account = server._account
    mail_root = Path(server.mail_location.removeprefix("maildir:").split("%u")[0])
    maildir = mail_root / user / "Maildir"
    for sub in ("cur", "new", "tmp"):
        (maildir / sub).mkdir(parents=True, exist_ok=True)
    os.chown(mail_root / user, account.uid, account.gid)
    for directory in (maildir, maildir / "cur", maildir / "new", maildir / "tmp"):
        os.chown(directory, account.uid, account.gid)
    cur = maildir / "cur"
    base = 1_600_000_000
    for n in range(count):
        body = small_message(user, n)
        path = cur / f"{base + n}.M{n}P1.bench,S={len(body)},W={len(body)}:2,{FLAGS[n % len(FLAGS)]}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, body)
        os.fchown(fd, account.uid, account.gid)
        os.close(fd)
        os.utime(path, (base + n * 60, base + n * 60))
    index_folder(server, user)


def index_folder(server: DovecotServer, user: str) -> None:
    """Open the INBOX once so Dovecot builds its uidlist and index outside the measured runs."""
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=900)
    conn.connect()
    try:
        conn.authenticate_plain(server.master_user, server.master_password, authzid=user)
        conn.check(b"EXAMINE INBOX", "EXAMINE")
        tag = conn.send_command(b"UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE)")
        for parts in conn.responses(tag):
            if parts[0].startswith(tag):
                break
    finally:
        conn.close()


def measure(lab: ShmLab, source: DovecotServer, users: Sequence[str], messages: int, label: str) -> Row:
    name = "".join(c if c.isalnum() else "-" for c in label)
    target = lab.dovecot(f"target-{name}", users, store="mdbox")
    plan = write_plan(lab.workdir / f"plan-{name}", source, target, users)
    measured = run_measured(
        cutover_argv(plan, len(users)), bench_env_for(lab, source, target), lab.workdir / "logs", name
    )
    if measured.returncode != 0:
        for log in sorted((plan.parent / "state" / "logs").glob("run-*.log")):
            print(log.read_text()[-3000:], file=sys.stderr)
    on_target = sum(count_messages(target, u) for u in users)
    problems = [] if measured.returncode == 0 else [f"exit {measured.returncode}: {measured.stderr[-300:]}"]
    if on_target != messages:
        problems.append(f"{on_target} on the target, {messages} expected")
    row = Row(
        label, len(users), messages, measured.wall, measured.cpu_user, measured.cpu_sys,
        measured.max_rss_kb * 1024 / MB, on_target, not problems, "; ".join(problems),
    )  # fmt: skip
    target.stop()
    print(f"  {label}: {row.seconds:.1f} s, peak RSS {row.peak_rss_mb:.1f} MB", file=sys.stderr)
    return row


def bench_env_for(lab: ShmLab, source: DovecotServer, target: DovecotServer) -> dict[str, str]:
    return bench_env(lab, source, target)  # type: ignore[arg-type]  # only its workdir is used


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000,500000", help="folder sizes, comma-separated")
    parser.add_argument("--mailboxes", type=int, default=8, help="mailboxes of the workers case (default 8)")
    parser.add_argument("--per-mailbox", type=int, default=10000, help="messages per mailbox there")
    parser.add_argument("--sizes-only", action="store_true", help="only the folder sizes")
    parser.add_argument("--workers-only", action="store_true", help="only the workers case")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def run(args: argparse.Namespace, lab: ShmLab) -> list[Row]:
    sizes = [] if args.workers_only else [int(s) for s in args.sizes.split(",") if s]
    many = [] if args.sizes_only else [f"w{i:02d}" for i in range(1, args.mailboxes + 1)]
    users = [f"m{n}" for n in sizes] + many
    source = lab.dovecot("source", users)
    started = time.perf_counter()
    for n in sizes:
        fill_maildir(source, f"m{n}", n)
    for user in many:
        fill_maildir(source, user, args.per_mailbox)
    total = sum(sizes) + len(many) * args.per_mailbox
    print(f"filled {total:,} messages in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    warm_bytecode(lab)  # type: ignore[arg-type]
    rows = [measure(lab, source, [f"m{n}"], n, f"1 folder of {n:,}") for n in sizes]
    if many:
        rows.append(measure(lab, source, many, len(many) * args.per_mailbox,
                            f"{len(many)} mailboxes x {args.per_mailbox:,}, {len(many)} workers"))  # fmt: skip
    return rows


def verdicts(rows: Sequence[Row]) -> list[str]:
    out: list[str] = []
    singles = [r for r in rows if r.mailboxes == 1]
    if len(singles) > 1:
        low, high = min(r.peak_rss_mb for r in singles), max(r.peak_rss_mb for r in singles)
        spread = (high - low) / low
        verdict = "PASS" if spread <= TARGET_SPREAD else "MISS"
        out.append(
            f"{verdict}  peak RSS within {TARGET_SPREAD:.0%} across folder sizes: {low:.1f}-{high:.1f} MB ({spread:.1%})"
        )
    for row in rows:
        if row.mailboxes > 1:
            verdict = "PASS" if row.peak_rss_mb < TARGET_RSS_MB else "MISS"
            out.append(
                f"{verdict}  < {TARGET_RSS_MB:.0f} MB with {row.mailboxes} workers: {row.peak_rss_mb:.1f} MB"
            )
    return out


def render(rows: Sequence[Row]) -> str:
    lines = [f"{'scenario':<40} {'msgs':>9} {'s':>8} {'msg/s':>7} {'user s':>7} {'sys s':>7} {'RSS MB':>7}"]
    for r in rows:
        flag = "" if r.ok else f"  [!] {r.note}"
        lines.append(f"{r.scenario:<40} {r.messages:>9,} {r.seconds:>8.1f} {r.msgs_per_s:>7,.0f} "
                     f"{r.cpu_user:>7.2f} {r.cpu_sys:>7.2f} {r.peak_rss_mb:>7.1f}{flag}")  # fmt: skip
    load = os.getloadavg()
    lines += [
        "",
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs",
    ]
    return "\n".join([*lines, "", *verdicts(rows)])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if find_dovecot() is None:
        print("dovecot is not installed (apt-get install dovecot-imapd dovecot-pop3d)", file=sys.stderr)
        return 2
    lab = ShmLab()
    try:
        rows = run(args, lab)
    except KeyboardInterrupt:
        return 130
    finally:
        lab.close()
    if args.output == "json":
        print(json.dumps([asdict(r) | {"msgs_per_s": r.msgs_per_s} for r in rows], indent=2))
    else:
        print(render(rows))
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
