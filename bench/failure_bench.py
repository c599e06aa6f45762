"""The failure view's costs: the live header read, the attempt history's writes and reads, the long-line scan.

    .venv/bin/python bench/failure_bench.py                       # everything, text
    .venv/bin/python bench/failure_bench.py --only ledger --only history --output json

What each part measures (every figure a median over ``--repeat`` runs, with p95 and the fastest):

* ``headers``: ``runners.peek.message_headers`` against a private source Dovecot on
  loopback (tests/servers), for a 1.5 MB message in INBOX: a new session each time, as the failure
  view opens one (connect, SASL PLAIN as the master user, EXAMINE, UID FETCH of the header fields,
  LOGOUT).
* ``ledger``: one batch of ``--batch`` messages written the way the engine writes it,
  ``StateStore.record_intents`` then ``record_results`` (two transactions, each committed with
  ``synchronous=FULL``), once all copied (nothing goes to ``message_attempts``) and once all failed
  (each also gets an attempt row). Only ``runners.state.store`` is used, so the same script gives
  the figure before the attempt history existed: run it with ``--only ledger`` and ``PYTHONPATH``
  pointing at a checkout of that commit (the failed batch then writes no attempts).
* ``history``: ``StateStore.message_history`` for a failed message of a folder of
  ``--folder-messages`` ledger rows (a few hundred of them failed, each with two attempts): by the
  ledger's key and UIDVALIDITY (what the failure view passes; an index lookup), and by UID alone.
* ``scan``: the readiness scan's longest-line test on a ``--scan-kb`` KB message whose lines are
  10,000 characters (just under ``checks.scan.MAX_LINE``: no finding, the regex's worst case):
  ``max(map(len, body.split(b"\\n")))`` as ``checks.message_scan.inspect`` does it, against the regex
  ``[^\\n]{MAX_LINE+1}`` it replaced, which restarts at every byte of a long line.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO), str(REPO / "tests")])  # tests/servers: the suite's private Dovecot

PARTS = ("headers", "ledger", "history", "scan")
#: The target's words for a refused message, as the ledger keeps them.
REFUSED = "NO [LIMIT] Mail size is larger than the maximum size allowed by server configuration"
LARGE = b"B" * 1_500_000


def timed(call: Callable[[], object], repeat: int) -> dict[str, float]:
    """Milliseconds per call: median, p95 (nearest rank) and the fastest of ``repeat`` calls."""
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median_ms": statistics.median(samples), "p95_ms": p95, "min_ms": ordered[0], "n": repeat}


def message(subject: str, body: bytes = b"Hello.") -> bytes:
    return (
        b"From: Alice Example <alice@example.test>\r\nTo: bob@example.test\r\n"
        b"Subject: " + subject.encode() + b"\r\nDate: Tue, 02 Jan 2024 10:00:00 +0100\r\n"
        b"Message-ID: <" + subject.replace(" ", ".").encode() + b"@example.test>\r\n\r\n" + body + b"\r\n"
    )


# -- the parts ------------------------------------------------------------------------------------


def bench_headers(root: Path, repeat: int) -> dict[str, Any]:
    from dovecot_lab import write_plan
    from servers import imapfill
    from servers.dovecot import DovecotServer

    from runners.headers import MessageHeaders
    from runners.peek import MessageRef, message_headers
    from runners.plan.loader import load_plan

    with DovecotServer() as source, DovecotServer() as target:
        source.add_user("alice", "alice-secret")
        big = message("too big for the target", LARGE)
        uid = imapfill.append(source, "alice", "INBOX", big)
        with imapfill.connect(source, "alice", master=True) as client:
            uidvalidity = client.folder_status("INBOX", [b"UIDVALIDITY"])[b"UIDVALIDITY"]
        os.environ.update(SRC_MASTER_PW=source.master_password, DST_MASTER_PW=target.master_password)
        plan = load_plan(write_plan(root / "headers", source, target))
        ref = MessageRef("INBOX", uid, str(uid), uidvalidity)
        first = message_headers(plan, "alice", ref)
        if not isinstance(first, MessageHeaders):
            raise SystemExit(f"the header read failed: {first}")
        return {"message_bytes": len(big), **timed(lambda: message_headers(plan, "alice", ref), repeat)}


def _ledger(store: Any, batch: int, first_uid: int, run_id: int, folder_id: int, status: str) -> None:
    """One batch as the engine writes it: the intents, then the target's answers."""
    from runners.state.rows import Intent, Outcome, SourceFacts
    from runners.state.rows import MessageRef as Row

    uids = range(first_uid, first_uid + batch)
    date, sha256 = "02-Mar-2025 08:15:00 +0100", b"\x00" * 32
    refs = [Row(folder_id, 1, str(u)) for u in uids]
    store.record_intents(
        Intent(ref, SourceFacts(u, 12_000, date, "\\Seen"), sha256, "INBOX", None, run_id)
        for ref, u in zip(refs, uids, strict=True)
    )
    if status == "failed":
        store.record_results(Outcome(ref, status, None, REFUSED) for ref in refs)
    else:
        store.record_results(
            Outcome(ref, status, str(u + 1000), None) for ref, u in zip(refs, uids, strict=True)
        )


def _new_store(path: Path, folders: int = 1) -> tuple[Any, int, list[int]]:
    from runners.state.store import StateStore

    store = StateStore(path)
    run_id = store.start_run("pilot", "full", 1)
    mailbox_id = store.upsert_mailbox("alice", "alice", "pilot")
    ids = [store.folder(mailbox_id, f"F{n}", f"F{n}", f"F{n}", None).id for n in range(folders)]
    return store, run_id, ids


def _batches(store: Any, batch: int, run_id: int, folder_id: int, status: str) -> Callable[[], None]:
    """Writes the next batch of new messages at each call."""
    starts = iter(range(1, 10**9, batch))
    return lambda: _ledger(store, batch, next(starts), run_id, folder_id, status)


def bench_ledger(root: Path, repeat: int, batch: int) -> dict[str, Any]:
    store, run_id, (copied_id, failed_id) = _new_store(root / "ledger.db", folders=2)
    out: dict[str, Any] = {"batch": batch}
    for label, folder_id in (("copied", copied_id), ("failed", failed_id)):
        out[label] = timed(_batches(store, batch, run_id, folder_id, label), repeat)
    attempts = store.query("SELECT name FROM sqlite_master WHERE name = 'message_attempts'")
    out["attempt_rows"] = store.query("SELECT count(*) FROM message_attempts")[0][0] if attempts else None
    store.close()
    return out


def bench_history(root: Path, repeat: int, messages: int) -> dict[str, Any]:
    store, run_id, (folder_id,) = _new_store(root / "history.db")
    for start in range(1, messages + 1, 200):
        size = min(200, messages + 1 - start)
        # Two batches in a hundred fail, in two runs: a few hundred failures with two attempts each.
        if (start // 200) % 100 == 50:
            for run in (run_id, store.start_run("pilot", "delta", 1)):
                _ledger(store, size, start, run, folder_id, "failed")
        else:
            _ledger(store, size, start, run_id, folder_id, "copied")
    failed = store.query(
        "SELECT src_uid, src_key, uidvalidity FROM messages WHERE status = 'failed' LIMIT 1"
    )[0]
    uid, key, uidvalidity = failed["src_uid"], failed["src_key"], failed["uidvalidity"]
    found = store.message_history("alice", "F0", uid, key=key, uidvalidity=uidvalidity)
    rows = store.query("SELECT count(*) AS n FROM messages")[0]["n"]
    out = {
        "folder_messages": rows,
        "attempt_rows": store.query("SELECT count(*) AS n FROM message_attempts")[0]["n"],
        "attempts_found": len(found),
        "by_key": timed(
            lambda: store.message_history("alice", "F0", uid, key=key, uidvalidity=uidvalidity), repeat
        ),
        "by_uid": timed(lambda: store.message_history("alice", "F0", uid), repeat),
    }
    store.close()
    return out


def bench_scan(repeat: int, kilobytes: int) -> dict[str, Any]:
    from checks.scan import MAX_LINE

    line = b"x" * (MAX_LINE - 1) + b"\r\n"  # 10,000 characters before the LF, CR included
    body = message("long lines", line * round(kilobytes * 1000 / len(line)))
    regex = re.compile(rb"[^\n]{%d}" % (MAX_LINE + 1))
    if max(map(len, body.split(b"\n"))) > MAX_LINE or regex.search(body):
        raise SystemExit(
            "the scan's message has a line over MAX_LINE: it would not be the regex's worst case"
        )
    return {
        "message_bytes": len(body),
        "max_line": MAX_LINE,
        "split": timed(lambda: max(map(len, body.split(b"\n"))), repeat),
        "regex": timed(lambda: regex.search(body), max(3, repeat // 5)),  # about 1 s a call
    }


# -- report ---------------------------------------------------------------------------------------


def fmt(t: dict[str, float]) -> str:
    return (
        f"median {t['median_ms']:.3f} ms, p95 {t['p95_ms']:.3f} ms, fastest {t['min_ms']:.3f} ms (n={t['n']})"
    )


def print_text(results: dict[str, Any]) -> None:
    if "headers" in results:
        h = results["headers"]
        print(f"header read from Dovecot ({h['message_bytes']:,} B message, a session each): {fmt(h)}")
    if "ledger" in results:
        ledger = results["ledger"]
        print(f"ledger batch of {ledger['batch']}, intents + results, all copied: {fmt(ledger['copied'])}")
        print(f"ledger batch of {ledger['batch']}, intents + results, all failed: {fmt(ledger['failed'])}")
        print(f"  attempt rows written: {ledger['attempt_rows']}")
    if "history" in results:
        h = results["history"]
        print(
            f"message_history, folder of {h['folder_messages']:,} messages ({h['attempt_rows']:,} attempt rows, "
            f"{h['attempts_found']} for this message):"
        )
        print(f"  by key and UIDVALIDITY: {fmt(h['by_key'])}")
        print(f"  by UID:                 {fmt(h['by_uid'])}")
    if "scan" in results:
        s = results["scan"]
        print(f"longest-line test, {s['message_bytes']:,} B message of {s['max_line']:,}-character lines:")
        print(f"  split (checks.scan):          {fmt(s['split'])}")
        print(f"  regex [^\\n]{{{s['max_line'] + 1}}} (before): {fmt(s['regex'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", choices=PARTS, help="run only this part (repeatable)")
    parser.add_argument("--repeat", type=int, default=20, help="calls per figure (default 20)")
    parser.add_argument("--batch", type=int, default=200, help="messages per ledger batch (default 200)")
    parser.add_argument("--folder-messages", type=int, default=40_000)
    parser.add_argument("--scan-kb", type=int, default=450)
    parser.add_argument("--output", choices=("text", "json"), default="text")
    args = parser.parse_args()
    parts = args.only or PARTS
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="failbench") as tmp:
        root = Path(tmp)
        if "headers" in parts:
            results["headers"] = bench_headers(root, args.repeat)
        if "ledger" in parts:
            results["ledger"] = bench_ledger(root, args.repeat, args.batch)
        if "history" in parts:
            results["history"] = bench_history(root, args.repeat, args.folder_messages)
        if "scan" in parts:
            results["scan"] = bench_scan(args.repeat, args.scan_kb)
    if args.output == "json":
        print(json.dumps(results, indent=2))
    else:
        print_text(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
