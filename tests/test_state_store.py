"""The state store's own contract: a read-only open for an account that may not write the state
directory (while a runner writes in WAL mode, and when none does), and its failures as one line and
exit 2 at the command line: a corrupt state.db, a state directory that is a file or not writable, a
full disk. Permissions are real: the reading side runs as ``nobody`` in a child process."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from dovecot_lab import Unreachable, write_plan

from cockpit.cli import main
from runners.state.errors import StoreError
from runners.state.statuses import (
    AttemptStatus,
    CheckState,
    ControlAction,
    MailboxState,
    MessageStatus,
    RunKind,
    RunStatus,
)
from runners.state.store import StateStore

NOBODY = 65534
ROOT = Path(__file__).resolve().parents[1]

#: The child imports everything it will need while still root (the interpreter and its standard
#: library may live where nobody can read), then drops to nobody and runs the command line.
CHILD = """
import json, os, sys
import cockpit.cli, runners.engine.control, runners.plan.loader, runners.state.read_models.status
import runners.state.read_models.snapshot as snapshot, runners.state.store as store
import importlib, pkgutil, runners.state  # and every store module a read imports when first used,
for found in pkgutil.walk_packages(runners.state.__path__, 'runners.state.'):  # as nobody can't
    importlib.import_module(found.name)  # read this checkout (an installed one is readable by all)
import cockpit.errors, runners.errors, runners.state.statuses  # what main() imports when it runs
import runners.memory, ctypes, ctypes.util; runners.memory.tune_allocator()  # main() tunes malloc
import getpass, locale, sqlite3, traceback, importlib.resources
import encodings.ascii, encodings.idna, encodings.latin_1, encodings.utf_8_sig
cockpit.cli._parser()  # argparse reads its translations on first use
os.setgroups([])
os.setgid(int(sys.argv[1]))
os.setuid(int(sys.argv[1]))
assert os.geteuid() != 0
command = json.loads(sys.argv[2])
if command[0] == "take":  # what the read-only cockpit's poller does
    plan = runners.plan.loader.load_plan(command[1])
    shot = snapshot.take(store.StateStore(plan.state_db, read_only=True), plan)
    print(json.dumps({m.source: m.state for m in shot.mailboxes}))
    sys.exit(0)
sys.exit(cockpit.cli.main(command))
"""


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory nobody may enter and read, but not write (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="cutover-store-"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _plan(root: Path, state_dir: Path | str = "state") -> Path:
    plan = write_plan(
        root,
        Unreachable(10143),
        Unreachable(20143),
        mailboxes=(("alice", "alice", "pilot"), ("bob", "bob", "pilot")),
        tail=f'[state]\ndir = "{state_dir}"\n',
    )
    for path in (root, plan, root / "mailboxes.csv"):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return plan


def _as_nobody(*command: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}:{ROOT / 'tests'}", "HOME": "/nonexistent"}
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(NOBODY), json.dumps(command)],
        capture_output=True,
        text=True,
        cwd="/",
        env=env,
        timeout=120,
        check=False,
    )


def _writer(plan: Path) -> StateStore:
    """A runner's view of the store: a run under way, alice copied, bob not started."""
    store = StateStore(plan.parent / "state" / "state.db")
    run = store.start_run("pilot", "full", 1)
    alice = store.upsert_mailbox("alice", "alice", "pilot")
    store.claim_mailbox(alice, run)
    store.release_mailbox(alice, "ok")
    return store


def _read_only(root: Path) -> None:
    """The state directory and its files: readable by all, writable by root alone."""
    for path in (root / "state", *(root / "state").iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)


def test_a_reader_who_may_not_write_reads_while_a_runner_writes(shared_dir: Path) -> None:
    plan = _plan(shared_dir)
    writer = _writer(plan)  # its connection stays open: the store is in WAL mode, -wal and -shm exist
    _read_only(shared_dir)
    assert (shared_dir / "state" / "state.db-wal").exists()
    before = sorted(p.name for p in (shared_dir / "state").iterdir())

    status = _as_nobody("status", "--plan", str(plan), "--output", "json")
    shot = _as_nobody("take", str(plan))

    assert status.returncode == 0, status.stderr
    data = json.loads(status.stdout)
    assert [(m["source"], m["state"]) for m in data["mailboxes"]] == [("alice", "ok")]
    assert data["runs"][0]["status"] == "running"
    assert shot.returncode == 0, shot.stderr
    assert json.loads(shot.stdout) == {"alice": "ok", "bob": "pending"}
    assert sorted(p.name for p in (shared_dir / "state").iterdir()) == before
    writer.close()


def test_a_reader_who_may_not_write_reads_when_no_runner_is_there(shared_dir: Path) -> None:
    plan = _plan(shared_dir)
    _writer(plan).close()  # the last connection checkpoints: no -wal, no -shm, nothing to share
    _read_only(shared_dir)
    assert not (shared_dir / "state" / "state.db-wal").exists()

    status = _as_nobody("status", "--plan", str(plan), "--output", "json")

    assert status.returncode == 0, status.stderr
    assert [m["source"] for m in json.loads(status.stdout)["mailboxes"]] == ["alice"]


def test_a_store_being_created_reads_as_empty(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``status`` while a runner's first open has made the file but not its tables yet."""
    plan = _plan(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").touch()

    assert main(["status", "--plan", str(plan), "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []
    writer = StateStore(tmp_path / "state" / "state.db")
    writer.start_run("pilot", "full", 1)
    reader = StateStore(tmp_path / "state" / "state.db", read_only=True)
    assert [run.wave for run in reader.recent_runs()] == ["pilot"]


def test_a_read_only_store_refuses_every_write(tmp_path: Path) -> None:
    StateStore(tmp_path / "state.db").close()
    store = StateStore(tmp_path / "state.db", read_only=True)

    with pytest.raises(StoreError, match="opened read-only"):
        store.request_control(ControlAction.PAUSE, wave="pilot", mailbox=None, requested_by="helpdesk")
    with pytest.raises(StoreError, match="opened read-only"):
        store.upsert_mailbox("alice", "alice", "pilot")
    assert store.last_control_id() == 0


# -- failures at the command line: one line, exit 2 -------------------------------------------------


def _one_line_error(capsys: pytest.CaptureFixture[str], code: int) -> str:
    out, err = capsys.readouterr()
    assert code == 2
    assert "Traceback" not in out + err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("cutover: error: state store ")
    return lines[0]


@pytest.mark.parametrize("command", ["control", "status"])
def test_a_corrupt_state_db(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str) -> None:
    plan = _plan(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"this is not what SQLite wrote\n" * 200)
    argv = (
        ["control", "pause", "--plan", str(plan)] if command == "control" else ["status", "--plan", str(plan)]
    )

    line = _one_line_error(capsys, main(argv))

    assert str(tmp_path / "state" / "state.db") in line and "not a database" in line


def test_a_state_directory_that_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(tmp_path)
    (tmp_path / "state").write_text("not a directory\n")

    line = _one_line_error(capsys, main(["control", "pause", "--plan", str(plan)]))

    assert f"{tmp_path / 'state'} is a file" in line


def test_a_state_directory_this_account_may_not_write(shared_dir: Path) -> None:
    plan = _plan(shared_dir)
    _writer(plan).close()
    _read_only(shared_dir)

    done = _as_nobody("control", "pause", "--plan", str(plan))

    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith(f"cutover: error: state store {shared_dir / 'state' / 'state.db'}: ")
    assert "readonly" in line or "read-only" in line or "permission" in line.lower()


@pytest.fixture
def small_disk() -> Iterator[Path]:
    """A 1 MiB tmpfs, mounted for the test (the suite runs as root)."""
    path = Path(tempfile.mkdtemp(prefix="cutover-full-"))
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        path.rmdir()
        pytest.skip(f"can't mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(
            ["umount", "--lazy", str(path)], check=True
        )  # lazy: a failed test may hold a file open
        path.rmdir()


def _fill(disk: Path) -> None:
    with open(disk / "filler", "wb", buffering=0) as fh:  # unbuffered: nothing left to flush on close
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC


def test_a_full_disk(tmp_path: Path, small_disk: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = _plan(tmp_path, small_disk / "state")
    store = StateStore(small_disk / "state" / "state.db")
    store.upsert_mailbox("alice", "alice", "pilot")
    store.close()
    _fill(small_disk)

    line = _one_line_error(capsys, main(["control", "pause", "--plan", str(plan)]))

    assert "disk is full" in line
    # Nothing was recorded, and the store still reads (a full disk can't hold a reader's -shm either).
    reader = StateStore(small_disk / "state" / "state.db", read_only=True)
    assert reader.last_control_id() == 0 and list(reader.mailbox_states()) == ["alice"]
    reader.close()


def test_the_schema_lists_every_status_beside_its_column() -> None:
    schema = (ROOT / "runners" / "state" / "schema.sql").read_text()

    def comment_of(table: str, column: str) -> str:
        body = schema.split(f"CREATE TABLE IF NOT EXISTS {table} (", 1)[1].split(");", 1)[0]
        lines = body.splitlines()
        (index,) = [i for i, line in enumerate(lines) if line.split()[:1] == [column]]
        # The comment is on the column's line, or on the line just above it.
        return " ".join(line.partition("--")[2] for line in lines[max(index - 1, 0) : index + 1])

    for (table, column), enum in {
        ("runs", "kind"): RunKind,
        ("runs", "status"): RunStatus,
        ("mailboxes", "state"): MailboxState,
        ("message_attempts", "status"): AttemptStatus,
        ("controls", "action"): ControlAction,
        ("check_results", "state"): CheckState,
    }.items():
        words = set(comment_of(table, column).replace("|", " ").replace("(", " ").split())
        assert {str(v) for v in enum} <= words, (table, column)
    header = schema.split("CREATE TABLE", 1)[0]
    assert all(str(v) in header for v in MessageStatus)


def test_the_cockpit_on_a_corrupt_store_says_so_before_taking_the_screen(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = _plan(tmp_path)
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "state.db").write_bytes(b"this is not what SQLite wrote\n" * 200)

    line = _one_line_error(capsys, main(["tui", "--read-only", "--plan", str(plan)]))

    assert "not a database" in line
