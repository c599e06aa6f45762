"""Readiness benchmark: ``cutover check`` over many small mailboxes and many domains, on real servers.

    .venv/bin/python bench/checks_bench.py [--mailboxes 1000] [--domains 200] [--messages 3] [--copy]
                                           [--output text|json]

Starts a source Dovecot with N users (M small messages each, or with ``--corpus`` the first M
messages of the migration bench's corpus; every third in a second folder), a
target Dovecot, two NSD instances serving D zones (MX, SPF, DMARC; the secondary agrees) and a
slapd holding the N people in a legacy and an AD-like target tree, writes a plan covering all of it
and times one ``cutover check`` run (every check that applies: DNS, directory, source survey and
scan, folder names and limits, the target's size limit). The issue's target: under 60 s for 1,000
mailboxes and 200 domains on this 2-core machine.

Also reported: the logins each Dovecot accepted during the run (from its log: one per mailbox per
side is the goal), and the source read's messages per second (messages scanned over the seconds of
SRC-READ-004, which waits for the whole source pass: survey and scan). ``--copy`` then times
``cutover run`` over the same mailboxes, for the engine's own read-and-copy rate next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO), str(REPO / "tests"), str(REPO / "bench")])

import dovecot_lab as lab  # noqa: E402
from corpus import build_corpus  # noqa: E402
from servers.dns import NsdServer, free_loopback_address  # noqa: E402
from servers.dovecot import DovecotServer  # noqa: E402
from servers.logins import dovecot_logins  # noqa: E402
from servers.slapd import (  # noqa: E402
    LEGACY_PEOPLE,
    READER_DN,
    READER_PASSWORD,
    TARGET_CORP,
    SlapdServer,
    ldif_entry,
    legacy_person,
    target_user,
)

from runners.imap.wire import ImapConnection  # noqa: E402

TARGET_SECONDS = 60.0


def message(user: str, n: int) -> bytes:
    return (
        f"From: sender{n}@example.test\r\nTo: {user}@bench.test\r\nSubject: bench {n}\r\n"
        f"Message-ID: <{user}.{n}@bench.test>\r\nDate: Tue, 02 Jan 2024 10:00:00 +0100\r\n\r\n"
        + "Some text of a small message.\r\n"
        * (20 + n * 7)
    ).encode()


def fill(server: DovecotServer, user: str, messages: int = 3, bodies: list[bytes] | None = None) -> None:
    """``messages`` small ones, or ``bodies`` (the corpus), every third in Archive."""
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=60)
    conn.connect()
    try:
        conn.authenticate_plain(server.master_user, server.master_password, authzid=user)
        conn.command(b'CREATE "Archive"', "CREATE")
        for n in range(messages):
            folder = "Archive" if n % 3 == 2 else "INBOX"
            body = bodies[n] if bodies else message(user, n)
            conn.send_with_literals([b"APPEND " + conn.astring(folder) + b" () ", (body,)], "APPEND")
    finally:
        conn.close()


def zone(name: str, primary: str, secondary: str) -> str:
    return f"""$ORIGIN {name}.
$TTL 300
@ IN SOA ns1.{name}. hostmaster.{name}. 2026112901 3600 600 86400 300
@ IN NS ns1.{name}.
@ IN NS ns2.{name}.
ns1 IN A {primary}
ns2 IN A {secondary}
@ 300 IN MX 10 mx1.legacy.test.
@ IN TXT "v=spf1 include:spf.target.test -all"
_dmarc IN TXT "v=DMARC1; p=quarantine"
"""


def shared_zones(primary: str, secondary: str) -> dict[str, str]:
    legacy = zone("legacy.test", primary, secondary) + "mx1 IN A 127.0.0.1\n"
    target = zone("target.test", primary, secondary) + 'spf IN TXT "v=spf1 ip4:127.0.0.1 -all"\n'
    return {"legacy.test": legacy, "target.test": target}


def directory_ldif(users: list[str], domains: list[str]) -> str:
    """Every mailbox in the legacy directory and, mailbox-enabled, in the AD-like target one."""
    out = [
        ldif_entry(dn, {"objectClass": ["organizationalUnit"], "ou": [dn.split(",")[0][3:]]})
        for dn in (LEGACY_PEOPLE, TARGET_CORP)
    ]
    for i, user in enumerate(users):
        address = f"{user}@{domains[i % len(domains)]}"
        out.append(legacy_person(LEGACY_PEOPLE, user, address))
        out.append(target_user(TARGET_CORP, user, address, upn=address))
    return "".join(out)


def write_plan(
    root: Path,
    source: DovecotServer,
    target: DovecotServer,
    users: list[str],
    domains: list[str],
    primary: NsdServer,
    secondary: NsdServer,
    slapd: SlapdServer,
) -> Path:
    """The engine tests' plan (tests/dovecot_lab.py), with DNS and both directories on top."""
    servers = json.dumps([primary.endpoint, secondary.endpoint])
    nameservers = ", ".join(f'"{d}" = {servers}' for d in [*domains, "legacy.test", "target.test"])
    return lab.write_plan(
        root,
        source,
        target,
        mailboxes=tuple((u, f"{u}@{domains[i % len(domains)]}", "w") for i, u in enumerate(users)),
        target_extra="max_message_bytes = 36700160",
        tail=f"""[dns]
domains = {json.dumps(domains)}
resolver = "{primary.endpoint}"
nameservers = {{ {nameservers} }}
legacy_mx = ["mx*.legacy.test"]
target_mx = ["*.mail.target.test"]
spf_includes = ["spf.target.test"]

[directory.source]
url = "{slapd.url}"
base = "{LEGACY_PEOPLE}"
preset = "inetlocalmailrecipient"
bind_dn = "{READER_DN}"
bind_password = "env:BENCH_LDAP_PW"

[directory.target]
url = "{slapd.url}"
base = "{TARGET_CORP}"
preset = "ad"
bind_dn = "{READER_DN}"
bind_password = "env:BENCH_LDAP_PW"

[checks]
timeout = 300
""",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mailboxes", type=int, default=1000)
    parser.add_argument("--domains", type=int, default=200)
    parser.add_argument("--messages", type=int, default=3, help="messages per mailbox (default 3)")
    parser.add_argument(
        "--corpus",
        action="store_true",
        help="the migration bench's corpus (bench/corpus.py) instead of tiny messages",
    )
    parser.add_argument("--copy", action="store_true", help="also time cutover run over the same mailboxes")
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    users = [f"u{n:04d}" for n in range(args.mailboxes)]
    domains = [f"d{n:03d}.test" for n in range(args.domains)]
    root = Path(tempfile.mkdtemp(prefix="checkbench"))
    servers: list[Any] = []
    try:
        source = DovecotServer()
        target = DovecotServer()
        for user in users:
            source.add_user(user, "pw")
        for i, user in enumerate(users):  # every target mailbox exists, as the copy and target checks need
            target.add_user(f"{user}@{domains[i % len(domains)]}", "pw")
        servers += [source.start(), target.start()]
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=8) as pool:
            bodies = [m.body for m in build_corpus(args.messages, seed=1)] if args.corpus else None
            list(pool.map(lambda u: fill(source, u, args.messages, bodies), users))
        fill_seconds = time.monotonic() - started
        primary_ip, secondary_ip = free_loopback_address(53), free_loopback_address(53)
        all_zones = {d: zone(d, primary_ip, secondary_ip) for d in domains} | shared_zones(
            primary_ip, secondary_ip
        )
        primary, secondary = NsdServer(primary_ip, all_zones), NsdServer(secondary_ip, all_zones)
        servers += [primary.start(), secondary.start()]
        slapd = SlapdServer(directory_ldif(users, domains))
        servers.append(slapd.start())
        plan = write_plan(root, source, target, users, domains, primary, secondary, slapd)
        env = dict(
            os.environ,
            SRC_MASTER_PW=source.master_password,
            DST_MASTER_PW=target.master_password,
            BENCH_LDAP_PW=READER_PASSWORD,
        )
        logins_before = sum(dovecot_logins(source).values()), sum(dovecot_logins(target).values())
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", "cockpit.cli", "check", "--plan", str(plan), "--output", "json"],
            env=env,
            capture_output=True,
            text=True,
            cwd=root,
        )
        seconds = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        logins = (
            sum(dovecot_logins(source).values()) - logins_before[0],
            sum(dovecot_logins(target).values()) - logins_before[1],
        )
        data = json.loads(proc.stdout)
        by_category: dict[str, float] = {}
        for c in data["checks"]:
            by_category[c["category"]] = max(by_category.get(c["category"], 0.0), c["seconds"])
        read_seconds = next(c["seconds"] for c in data["checks"] if c["check_id"] == "SRC-READ-004")
        scanned = args.mailboxes * args.messages
        copy = copy_rate(plan, env, root, scanned) if args.copy else None
        result = {
            "mailboxes": args.mailboxes,
            "domains": args.domains,
            "fill_seconds": round(fill_seconds, 1),
            "check_seconds": round(seconds, 2),
            "exit_code": proc.returncode,
            "cpu_seconds": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 2),
            "peak_rss_mb": round(after.ru_maxrss / 1024, 1),
            "summary": data["summary"],
            "logins_source": logins[0],
            "logins_target": logins[1],
            "source_read_seconds": round(read_seconds, 2),
            "source_read_msgs_per_s": round(scanned / read_seconds, 1) if read_seconds else None,
            "copy": copy,
            "slowest_check_per_category_seconds": {k: round(v, 2) for k, v in sorted(by_category.items())},
            "checks_not_ok": [c for c in data["checks"] if c["state"] != "ok"],
            "target_seconds": TARGET_SECONDS,
            "verdict": "PASS" if seconds < TARGET_SECONDS else "MISS",
        }
        if args.output == "json":
            print(json.dumps(result, indent=2))
        else:
            print(
                f"cutover check: {args.mailboxes} mailboxes, {args.domains} domains: {seconds:.1f} s "
                f"(target < {TARGET_SECONDS:.0f} s: {result['verdict']}), exit {proc.returncode}, "
                f"CPU {result['cpu_seconds']} s, peak RSS {result['peak_rss_mb']} MB"
            )
            print(f"source filled in {fill_seconds:.1f} s; findings: {data['summary']}")
            print(
                f"logins accepted: source {logins[0]}, target {logins[1]} ({args.mailboxes} mailboxes); "
                f"source read: {scanned} messages in {read_seconds:.1f} s = {result['source_read_msgs_per_s']} msg/s"
            )
            if copy is not None:
                print(
                    f"cutover run (copy): {copy['seconds']} s = {copy['msgs_per_s']} msg/s, exit {copy['exit_code']}"
                )
            print("slowest check per category (s):", result["slowest_check_per_category_seconds"])
            for c in result["checks_not_ok"]:
                print(f"  {c['check_id']} {c['state']}: {c['reason']}")
        return 0 if seconds < TARGET_SECONDS else 1
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


def copy_rate(plan: Path, env: dict[str, str], root: Path, messages: int) -> dict[str, Any]:
    """``cutover run`` of the plan's one wave: the engine reading (and copying) the same source."""
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "cockpit.cli", "run", "--plan", str(plan), "--wave", "w", "--output", "json"],
        env=env,
        capture_output=True,
        text=True,
        cwd=root,
    )
    seconds = time.monotonic() - started
    return {
        "seconds": round(seconds, 2),
        "msgs_per_s": round(messages / seconds, 1),
        "exit_code": proc.returncode,
    }


if __name__ == "__main__":
    sys.exit(main())
