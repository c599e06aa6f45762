"""Where each of the wave's target folders stood at the switch: UIDVALIDITY and UIDNEXT, per mailbox.

Recorded once, at the switch, before any mail can reach the target through the new MX; a rollback
then copies back exactly the UIDs at or above each folder's UIDNEXT (the ones the target assigned
after the switch). UIDs are the target's own count, so this is exact where a date is not: an
INTERNALDATE is whatever the delivering agent or an APPEND says, and the engine's own copies carry the
legacy's dates, some of them after the switch time for mail that was late on the legacy.

The record is a JSON file in the rollback's own state directory, written once (temp file, then
rename): a switch resumed after ``kill -9`` must not record again, as mail may have arrived by then.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from runners.connectors.credentials import user_password
from runners.connectors.imap_common import list_folders, statuses
from runners.connectors.imap_login import open_imap
from runners.errors import CommandError, MigrationError
from runners.plan.model import MailboxEntry, Plan
from runners.safe_text import file_name_part
from runners.state.open_store import open_store
from runners.state.private import write_private


@dataclass(frozen=True, slots=True)
class FolderMark:
    uidvalidity: int
    uidnext: int


@dataclass(frozen=True, slots=True)
class SwitchMarks:
    """Per target login, per folder wire name: its mark at the switch; ``at``: when it was read."""

    wave: str
    at: float
    mailboxes: Mapping[str, Mapping[str, FolderMark]]

    def to_json(self) -> str:
        return json.dumps(
            {
                "wave": self.wave,
                "at": self.at,
                "mailboxes": {
                    box: {name: [m.uidvalidity, m.uidnext] for name, m in folders.items()}
                    for box, folders in self.mailboxes.items()
                },
            },
            indent=1,
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> SwitchMarks:
        data = json.loads(text)
        return cls(
            data["wave"],
            float(data["at"]),
            {
                box: {name: FolderMark(int(v), int(n)) for name, (v, n) in folders.items()}
                for box, folders in data["mailboxes"].items()
            },
        )


def rollback_dir(plan: Plan) -> Path:
    """The rollback's own state directory: its ledger never mixes with the forward one."""
    return plan.state_dir / "rollback"


def marks_path(plan: Plan, wave: str) -> Path:
    return rollback_dir(plan) / f"{file_name_part(wave)}.switch-marks.json"


def engine_copies_path(plan: Plan, wave: str) -> Path:
    return rollback_dir(plan) / f"{file_name_part(wave)}.engine-copies.json"


def record_engine_copies(plan: Plan, wave: str) -> Path:
    """Write which target UIDs the forward engine itself appended, per target login and folder.

    Late mail caught from the legacy after the switch reaches the target above the marks: the rollback
    must not copy those back (the legacy has them). Read from the forward ledger, rewritten before every
    rollback pass (temp file, then rename).
    """
    store = open_store(plan, read_only=True)
    targets = {e.source: e.target for e in plan.wave(wave)}
    copies: dict[str, dict[str, list[int]]] = {}
    for row in store.mailbox_ledger_counts(wave):
        if row.source not in targets:
            continue
        folders = copies.setdefault(targets[row.source], {})
        for folder in store.mailbox_detail(row.source).folders:
            uids = sorted(int(t) for t in store.mapped_target_ids(row.id, folder.target) if t.isdigit())
            if uids:
                folders.setdefault(folder.target, []).extend(uids)
    path = engine_copies_path(plan, wave)
    write_private(path, json.dumps(copies, sort_keys=True))
    return path


def read_engine_copies(path: str) -> dict[str, dict[str, frozenset[int]]]:
    with open(path, encoding="utf-8") as handle:
        data = json.load(handle)
    return {box: {name: frozenset(uids) for name, uids in folders.items()} for box, folders in data.items()}


def read_switch_marks(plan: Plan, wave: str) -> SwitchMarks | None:
    path = marks_path(plan, wave)
    if not path.exists():
        return None
    return SwitchMarks.from_json(path.read_text(encoding="utf-8"))


def record_switch_marks(plan: Plan, wave: str) -> SwitchMarks:
    """Read and store every target folder's UIDVALIDITY and UIDNEXT for the wave's mailboxes.

    Call it in the switch step, before the MX or routing change. Idempotent: when the wave's marks
    are already recorded they are returned unchanged (never re-read after mail may have arrived).
    Raises ``MigrationError`` (or the connection's error) when a mailbox can't be read: a switch
    without marks could not be rolled back exactly, so the step must not go on silently.
    """
    existing = read_switch_marks(plan, wave)
    if existing is not None:
        return existing
    if plan.target.type != "imap":
        raise MigrationError(f"switch marks need an IMAP target; the plan's target is {plan.target.type!r}")
    at = time.time()
    entries = plan.wave(wave)
    # Mailboxes at once, as the engine copies them (a wave of 1,000 read one by one took 16 s of the
    # switch step): the window is the users' downtime.
    with ThreadPoolExecutor(max_workers=max(1, min(plan.workers, len(entries)))) as pool:
        read = list(pool.map(lambda entry: _mailbox_marks(plan, entry), entries))
    marks = SwitchMarks(wave, at, {e.target: folders for e, folders in zip(entries, read, strict=True)})
    write_private(marks_path(plan, wave), marks.to_json())
    return marks


def _mailbox_marks(plan: Plan, entry: MailboxEntry) -> dict[str, FolderMark]:
    endpoint = plan.target
    conn = open_imap(endpoint, entry.target, user_password(endpoint, entry.target, entry.target_password))
    try:
        names = [wire for wire, _sep, attrs in list_folders(conn) if not _noselect(attrs)]
        out: dict[str, FolderMark] = {}
        for name, state in zip(names, statuses(conn, names), strict=True):
            if isinstance(state, CommandError):
                raise MigrationError(f"{entry.target}: folder {name!r} can't be read at the switch: {state}")
            out[name] = FolderMark(state.uidvalidity, state.uidnext)
        return out
    finally:
        conn.close()


def _noselect(attributes: tuple[str, ...]) -> bool:
    return any(a.lower() in ("\\noselect", "\\nonexistent") for a in attributes)
