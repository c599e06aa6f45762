"""EWS target benchmark: a corpus in a private source Dovecot, migrated into the EWS emulator
(lab/ews) over loopback HTTPS, beside a naive exchangelib loop measured in the same run.

    .venv/bin/python bench/ews_bench.py [--messages 5000] [--mailboxes 8] [--seed 1] [--output text|json]

Scenarios, each into a fresh emulator:
  cutover: ``cutover run`` with one worker per mailbox (CreateItem batches, every property in them);
  naive:   one process, one ``Message(mime_content=...).save()`` per message (exchangelib's usual
           loop: one CreateItem per message, no properties, so every item is a draft).
"CPU s" is the child's own user+sys (os.wait4), "peak RSS" its ru_maxrss, "HTTP requests" what
the emulator served (its own CPU, in this process, is not counted). Goals (issue 9): at most 15
requests and 1.0 CPU s per 1,000 messages, at most 120 MB peak RSS for 8 mailboxes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO), str(REPO / "tests")])  # tests/servers: the suite's private Dovecot

from corpus import build_corpus  # noqa: E402
from fill import fill_users  # noqa: E402
from measure import Measured, run_measured  # noqa: E402
from servers.dovecot import DovecotServer  # noqa: E402

from lab.ews import EwsConfig, EwsEmulator, Mailbox  # noqa: E402

WAVE = "bench"
ACCOUNT = "svc-bench@corp.example"
PASSWORD = "bench-ews-pw"
GOALS = {"requests_per_1000": 15.0, "cpu_per_1000": 1.0, "peak_rss_mb": 120.0}


@dataclass(frozen=True, slots=True)
class Figures:
    scenario: str
    messages: int
    items: int
    seconds: float
    cpu_seconds: float
    peak_rss_mb: float
    http_requests: int
    drafts: int
    returncode: int
    by_operation: dict[str, int]
    error: str = ""

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds else 0.0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {
            "messages_per_s": round(self.per_second, 1),
            "requests_per_1000": round(1000 * self.http_requests / max(1, self.messages), 2),
            "cpu_per_1000": round(1000 * self.cpu_seconds / max(1, self.messages), 3),
        }


def address(user: str) -> str:
    return f"{user}@corp.example"


def emulator(users: list[str]) -> EwsEmulator:
    return EwsEmulator(
        EwsConfig(
            accounts={ACCOUNT: PASSWORD},
            impersonation={ACCOUNT: frozenset({"*"})},
            mailboxes={address(u): Mailbox(max_message_size=150_000_000) for u in users},
        )
    ).start()


def count(target: EwsEmulator, users: list[str]) -> tuple[int, int]:
    items = drafts = 0
    for user in users:
        for folder in target.folder_names(address(user)):
            for item in target.items(address(user), folder):
                items += 1
                drafts += item.is_draft
    return items, drafts


def plan_text(source: DovecotServer, target: EwsEmulator, users: list[str], args: argparse.Namespace) -> str:
    return f"""
[source]
type = "imap"
host = "127.0.0.1"
port = {source.imap_port}
security = "plain"
auth = "master"
master_user = "{source.master_user}"
master_password = "env:SRC_MASTER_PW"
max_connections = {len(users) * 2}

[target]
type = "ews"
host = "127.0.0.1"
port = {target.port}
auth = "basic"
service_account = "{ACCOUNT}"
password = "env:EWS_PW"
ca_file = "{target.ca_file}"
batch_items = {args.batch_items}

[mailboxes]
entries = [ {", ".join(f'{{ source = "{u}", target = "{address(u)}", wave = "{WAVE}" }}' for u in users)} ]

[state]
dir = "state"

[run]
workers = {len(users)}
batch_bytes = {args.batch_bytes}
batch_messages = {args.batch_messages}
"""


def measured_figures(
    scenario: str, run: Measured, target: EwsEmulator, users: list[str], total: int
) -> Figures:
    items, drafts = count(target, users)
    return Figures(
        scenario, total, items, run.wall, run.cpu, run.max_rss_kb / 1024, sum(target.requests.values()), drafts,
        run.returncode, dict(target.requests), run.stderr.strip().splitlines()[-1] if run.returncode and run.stderr.strip() else "",
    )  # fmt: skip


def naive_worker(args: argparse.Namespace) -> None:
    """The naive loop, run as the measured child: fetch every message, save each with exchangelib."""
    from exchangelib import BASIC, IMPERSONATION, Account, Configuration, Credentials, FailFast, Message
    from exchangelib.protocol import BaseProtocol
    from imapclient import IMAPClient

    from runners.connectors.ews_session import _TrustAdapter

    BaseProtocol.HTTP_ADAPTER_CLS = _TrustAdapter
    _TrustAdapter.trust[f"127.0.0.1:{args.ews_port}"] = args.ca_file
    config = Configuration(
        service_endpoint=f"https://127.0.0.1:{args.ews_port}/EWS/Exchange.asmx",
        credentials=Credentials(ACCOUNT, os.environ["EWS_PW"]),
        auth_type=BASIC,
        retry_policy=FailFast(),
    )
    for user in args.users.split(","):
        account = Account(address(user), config=config, autodiscover=False, access_type=IMPERSONATION)
        inbox = account.inbox
        client = IMAPClient("127.0.0.1", port=args.imap_port, ssl=False)
        client.login(f"{user}*{args.master}", os.environ["SRC_MASTER_PW"])
        for folder in [name for flags, _, name in client.list_folders() if b"\\Noselect" not in flags]:
            client.select_folder(folder, readonly=True)
            for _uid, data in client.fetch(client.search("ALL"), ["BODY.PEEK[]"]).items():
                Message(account=account, folder=inbox, mime_content=data[b"BODY[]"]).save()
        client.logout()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=5000, help="messages in all (default 5000)")
    parser.add_argument("--mailboxes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", choices=("text", "json"), default="text")
    parser.add_argument(
        "--batch-bytes",
        type=int,
        default=2 * 1024 * 1024,
        help="[run] batch_bytes of the plan (default 2 MiB)",
    )
    parser.add_argument(
        "--batch-messages", type=int, default=200, help="[run] batch_messages of the plan (default 200)"
    )
    parser.add_argument(
        "--batch-items", type=int, default=100, help="[target] batch_items of the plan (default 100)"
    )
    parser.add_argument("--no-naive", action="store_true", help="skip the naive exchangelib loop")
    parser.add_argument(
        "--profile", metavar="FILE", help="run the cutover scenario under profile_run.py (CPU timer)"
    )
    parser.add_argument("--naive-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--ews-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--imap-port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ca-file", help=argparse.SUPPRESS)
    parser.add_argument("--master", help=argparse.SUPPRESS)
    parser.add_argument("--users", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.naive_worker:
        naive_worker(args)
        return

    users = [f"bench{i:02d}" for i in range(1, args.mailboxes + 1)]
    per_user = args.messages // len(users)
    total = per_user * len(users)
    workdir = Path(tempfile.mkdtemp(prefix="cutover-ews-bench-"))
    source = DovecotServer()
    for user in users:
        source.add_user(user, f"{user}-pw")
    source.start()
    results: list[Figures] = []
    try:
        corpora = {u: build_corpus(per_user, args.seed + n) for n, u in enumerate(users)}
        fill_users(source.host, source.imap_port, source.master_user, source.master_password, corpora)
        env = dict(os.environ) | {"SRC_MASTER_PW": source.master_password, "EWS_PW": PASSWORD}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])

        target = emulator(users)
        try:
            plan = workdir / "plan.toml"
            plan.write_text(plan_text(source, target, users, args), encoding="utf-8")
            argv = [sys.executable, "-m", "cockpit.cli", "run", "--plan", str(plan), "--wave", WAVE,
                    "--output", "json", "--progress", "none"]  # fmt: skip
            if args.profile:
                argv[1:3] = [str(REPO / "bench" / "profile_run.py"), "-o", args.profile, "--"]
            run = run_measured(argv, env, workdir / "logs", "cutover")
            results.append(measured_figures("cutover", run, target, users, total))
        finally:
            target.stop()

        target = emulator(users)
        try:
            if args.no_naive:
                return _print(args, total, users, results)
            argv = [sys.executable, str(Path(__file__).resolve()), "--naive-worker", "--ews-port", str(target.port),
                    "--imap-port", str(source.imap_port), "--ca-file", str(target.ca_file), "--master", source.master_user,
                    "--users", ",".join(users)]  # fmt: skip
            run = run_measured(argv, env, workdir / "logs", "naive")
            results.append(measured_figures("naive exchangelib loop", run, target, users, total))
        finally:
            target.stop()
    finally:
        source.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    _print(args, total, users, results)


def _print(args: argparse.Namespace, total: int, users: list[str], results: list[Figures]) -> None:
    if args.output == "json":
        print(json.dumps({"goals": GOALS, "results": [r.as_dict() for r in results]}, indent=2))
        return
    print(
        f"batch_bytes {args.batch_bytes:,}, batch_messages {args.batch_messages}, batch_items {args.batch_items}; {total} messages, {len(users)} mailboxes, into the EWS emulator over loopback HTTPS"
    )
    print(
        f"{'scenario':<24}{'msg/s':>8}{'req/1000':>10}{'CPU s/1000':>12}{'peak RSS MB':>13}{'items':>8}{'drafts':>8}"
    )
    for r in results:
        d = r.as_dict()
        print(
            f"{r.scenario:<24}{d['messages_per_s']:>8}{d['requests_per_1000']:>10}{d['cpu_per_1000']:>12}"
            f"{r.peak_rss_mb:>13.1f}{r.items:>8}{r.drafts:>8}"
            + ("" if r.returncode == 0 else f"  (exit {r.returncode})")
        )
        print(f"{'':<24}requests: {', '.join(f'{k} {v}' for k, v in sorted(r.by_operation.items()))}")
        if r.error:
            print(f"{'':<24}error: {r.error}")
    print(f"goals: <= {GOALS['requests_per_1000']:.0f} requests and <= {GOALS['cpu_per_1000']} CPU s per 1,000 "
          f"messages, <= {GOALS['peak_rss_mb']:.0f} MB peak RSS")  # fmt: skip


if __name__ == "__main__":
    main()
