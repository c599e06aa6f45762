"""Where a copied message's CPU goes: each stage of the copy alone, beside the engine's whole run.

    .venv/bin/python bench/copy_stages.py [--messages 1500] [--repeat 3] [--output text|json]

One mailbox of the bench corpus in a private source Dovecot. In this process, on one thread, each
stage the engine runs for every message is timed alone (process CPU: user + system), against the
real servers:
  list     UID FETCH of UID, RFC822.SIZE, FLAGS, INTERNALDATE, folder by folder (``ImapSource``);
  fetch    the bodies (``ImapSource.fetch``);
  sha256   each body's digest, as the ledger keeps it;
  ledger   the ledger's writes in a real SQLite store: a batch intent, then each message's row
           with the next batch's intent, one transaction a batch, batches cut as the plan's
           defaults cut them;
  append   MULTIAPPEND into a fresh target folder (``ImapTarget.append``), a batch at a time.
Then ``cutover run`` copies the same mailbox into a fresh target (a child process, measured alone)
and a run of a one-message mailbox gives its start-up. What the run spends per message beyond
the sum of the stages is the engine's own: threads and hand-offs, lanes, the mailbox's counters
written with the ledger's batches, the lease check before each APPEND, the objects a message passes
through. Figures are medians of ``--repeat``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.extend([str(REPO), str(REPO / "tests")])

from corpus import build_corpus  # noqa: E402
from measure import run_measured  # noqa: E402
from migrate_bench import Lab, bench_env, count_messages, cutover_argv, fill_source, warm_bytecode, write_plan  # noqa: E402
from servers.dovecot import DovecotServer, find_dovecot  # noqa: E402

from runners.connectors.imap_source import ImapSource  # noqa: E402
from runners.connectors.imap_target import ImapTarget  # noqa: E402
from runners.connectors.ranged import UidRange  # noqa: E402
from runners.imap.wire import ImapConnection  # noqa: E402
from runners.model import AppendItem, FetchedMessage, FetchFailure, FolderInfo  # noqa: E402
from runners.plan.model import DEFAULT_BATCH_BYTES, DEFAULT_BATCH_MESSAGES  # noqa: E402
from runners.state.rows import BatchIntent, Sent, SentBatch, SourceFacts  # noqa: E402
from runners.state.statuses import MessageStatus  # noqa: E402
from runners.state.store import StateStore  # noqa: E402

USER = "stages"
STAGES = ("list", "fetch", "sha256", "ledger", "append")


@dataclass(slots=True)
class Pass:
    """One repetition: CPU microseconds per message of each stage, and of the engine's run."""

    messages: int
    stages_us: dict[str, float] = field(default_factory=dict)
    run_cpu_s: float = 0.0
    startup_cpu_s: float = 0.0

    @property
    def stages_total_us(self) -> float:
        return sum(self.stages_us.values())

    @property
    def run_us(self) -> float:
        """The run's CPU per message, start-up taken out."""
        return (self.run_cpu_s - self.startup_cpu_s) / self.messages * 1e6


class Clock:
    """Process CPU seconds (user + system) spent inside ``stage`` blocks, per stage."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.process_time()
        try:
            yield
        finally:
            self.spent[name] += time.process_time() - start


def session(server: DovecotServer) -> ImapConnection:
    conn = ImapConnection(server.host, server.imap_port, security="plain", timeout=60)
    conn.connect()
    conn.authenticate_plain(server.master_user, server.master_password, authzid=USER)
    return conn


def batches(fetched: Sequence[FetchedMessage]) -> Iterator[list[FetchedMessage]]:
    """The pipeline's cut with the plan's defaults: at most so many messages or bytes a batch."""
    batch: list[FetchedMessage] = []
    size = 0
    for message in fetched:
        batch.append(message)
        size += len(message.body)
        if size >= DEFAULT_BATCH_BYTES or len(batch) >= DEFAULT_BATCH_MESSAGES:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def record(store: StateStore, folder_id: int, batch: list[FetchedMessage], digests: list[bytes],
           earlier: list[SentBatch]) -> list[SentBatch]:  # fmt: skip
    """The ledger's writes of one batch as the pipeline makes them; returns its outcomes."""
    intent = BatchIntent(
        folder_id, 1, "INBOX", "1", 1,
        [Sent(m.meta.key, SourceFacts.of(m.meta), digest, len(m.body)) for m, digest in zip(batch, digests, strict=True)],
    )  # fmt: skip
    intent_id = store.record_sent(earlier, intent)
    assert intent_id is not None
    return [
        SentBatch(intent_id, intent, [(MessageStatus.COPIED, str(n), None) for n in range(1, len(batch) + 1)])
    ]


def copy_folder(clock: Clock, source: ImapSource, target: ImapTarget, store: StateStore, folder: FolderInfo,
                folder_id: int, wire: str) -> int:  # fmt: skip
    """Every stage over one folder, each timed alone; returns the messages copied."""
    with clock.stage("list"):
        source.open_folder(folder)
        metas = source.list_range(folder, UidRange(1, None))
    with clock.stage("fetch"):
        items = list(source.fetch(folder, metas))
    fetched = [m for m in items if isinstance(m, FetchedMessage)]
    failed = [m for m in items if isinstance(m, FetchFailure)]
    if failed:
        raise SystemExit(f"{len(failed)} bodies not fetched from {folder.raw_name}: {failed[0].reason}")
    outcomes: list[SentBatch] = []
    for batch in batches(fetched):
        with clock.stage("sha256"):
            digests = [hashlib.sha256(m.body).digest() for m in batch]
        with clock.stage("ledger"):
            outcomes = record(store, folder_id, batch, digests, outcomes)
        with clock.stage("append"):
            answers = target.append(
                wire, [AppendItem(m.body, m.meta.flags, m.meta.internaldate, "") for m in batch]
            )
        if any(a.error is not None for a in answers):
            raise SystemExit(f"the target refused an APPEND into {wire}: {answers[0].error}")
    with clock.stage("ledger"):
        store.record_sent(outcomes)
    return len(fetched)


def stages_pass(source_server: DovecotServer, target_server: DovecotServer, workdir: Path, index: int) -> tuple[int, dict[str, float]]:  # fmt: skip
    clock = Clock()
    source, target = ImapSource(session(source_server)), ImapTarget(session(target_server))
    store = StateStore(Path(tempfile.mkdtemp(dir=workdir)) / "state.db")
    mailbox = store.upsert_mailbox(USER, USER, "stages")
    copied = 0
    try:
        for number, folder in enumerate(f for f in source.list_folders() if f.selectable):
            wire = f"Stages{index}x{number}"
            target.conn.check(b"CREATE " + wire.encode(), f"CREATE {wire}")
            folder_id = store.folder(mailbox, folder.raw_name, "/".join(folder.path), wire, None).id
            copied += copy_folder(clock, source, target, store, folder, folder_id, wire)
    finally:
        source.close()
        target.close()
        store.close()
    return copied, {stage: spent / copied * 1e6 for stage, spent in clock.spent.items()}


def engine_cpu(lab: Lab, source: DovecotServer, name: str, expected: int) -> float:
    """CPU seconds of ``cutover run`` copying the source's ``expected`` messages into a fresh target."""
    target = lab.dovecot([USER])
    plan = write_plan(lab.workdir / f"plan-{name}", source, target, [USER])
    measured = run_measured(cutover_argv(plan, 1), bench_env(lab, source, target), lab.workdir / "logs", name)
    if measured.returncode != 0:
        raise SystemExit(f"cutover run failed ({measured.returncode}): {measured.stderr[-500:]}")
    arrived = count_messages(target, USER)
    lab.retire(target)
    if arrived != expected:
        raise SystemExit(f"cutover run copied {arrived} of {expected} messages: its CPU would not compare")
    return measured.cpu


def measure(args: argparse.Namespace, lab: Lab) -> list[Pass]:
    source, _ = fill_source(lab, build_corpus(args.messages, args.seed), [USER])
    tiny, _ = fill_source(lab, build_corpus(1, args.seed), [USER])
    warm_bytecode(lab)
    target = lab.dovecot([USER])
    passes: list[Pass] = []
    for i in range(args.repeat):
        copied, stages = stages_pass(source, target, lab.workdir, i)
        done = Pass(
            copied,
            stages,
            engine_cpu(lab, source, f"run-{i}", copied),
            engine_cpu(lab, tiny, f"startup-{i}", 1),
        )
        print(f"  pass {i}: stages {done.stages_total_us:.0f} us/msg, run {done.run_us:.0f} us/msg "
              f"(+ start-up {done.startup_cpu_s:.2f} s)", file=sys.stderr)  # fmt: skip
        passes.append(done)
    return passes


def summary(passes: Sequence[Pass]) -> dict[str, object]:
    def median(values: Sequence[float]) -> float:
        return round(statistics.median(values), 1)

    stages = {stage: median([p.stages_us[stage] for p in passes]) for stage in STAGES}
    stages_total = median([p.stages_total_us for p in passes])
    run = median([p.run_us for p in passes])
    return {
        "messages": passes[0].messages,
        "repeat": len(passes),
        "stage_us_per_message": stages,
        "stages_total_us": stages_total,
        "run_us_per_message_without_startup": run,
        "engine_beyond_stages_us": round(run - stages_total, 1),
        "startup_cpu_s": round(statistics.median(p.startup_cpu_s for p in passes), 3),
        "passes": [asdict(p) for p in passes],
    }


def render(data: dict[str, object]) -> str:
    stages = data["stage_us_per_message"]
    assert isinstance(stages, dict)
    lines = [
        f"CPU per message, microseconds (median of {data['repeat']}, {data['messages']:,} messages):",
        "",
    ]
    lines += [f"  {stage:<8} {us:>7.1f}" for stage, us in stages.items()]
    lines += [
        f"  {'stages':<8} {data['stages_total_us']:>7.1f}   (the sum: every message passes each once)",
        "",
        f"  cutover run, start-up taken out: {data['run_us_per_message_without_startup']:.1f}",
        f"  of which the engine's own (beyond the stages): {data['engine_beyond_stages_us']:.1f}",
        f"  start-up (a one-message mailbox): {data['startup_cpu_s']:.3f} CPU s",
    ]
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=1500, help="messages of the mailbox (default 1500)")
    parser.add_argument("--repeat", type=int, default=3, help="passes (default 3)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", choices=("text", "json"), default="text")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if find_dovecot() is None:
        print("dovecot is needed (apt-get install dovecot-imapd)", file=sys.stderr)
        return 2
    if args.messages < 1 or args.repeat < 1:
        print("--messages and --repeat must be at least 1", file=sys.stderr)
        return 2
    lab = Lab(keep=False)
    try:
        data = summary(measure(args, lab))
    finally:
        lab.close()
    print(json.dumps(data, indent=2) if args.output == "json" else render(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
