"""The store-and-forward spool: a message is safe on disk before the sender hears ``250``.

Layout under the plan's ``spool_dir``::

    tmp/<id>.msg           being received; deleted at start-up (its sender never got 250)
    queue/<id>.msg         accepted: one JSON line (the envelope), then the message as received
    queue/<id>.<n>.done    one delivery's outcome (recipients delivered or refused for good)
    failed/<id>.msg        given up on or refused by a backend (kept for the operator)
    failed/<id>.why        why, as JSON
    queue/<id>-dsn.msg     the notice to the sender of a failed message (``dsn.py``), spooled like any
                           message before the failed one moves to ``failed/``
    lock                   flock'd by the one proxy process that uses the spool

Durability: a message is written to ``tmp/``, fsync'd, renamed into ``queue/``, and ``queue/`` is
fsync'd; only then does the sender get ``250``. After each backend's ``250`` for DATA the delivery's
record is written the same way (file fsync'd, renamed, directory fsync'd): a crash after it never
delivers those recipients again. The window that remains: a crash between the backend's ``250`` and
that record's fsync (a few milliseconds) delivers that backend's recipients a second time after the
restart. Nothing is ever lost: the message file goes only after every recipient has a record.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_MSG = ".msg"


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    backend: str


@dataclass(frozen=True, slots=True)
class Envelope:
    id: str
    sender: str
    #: MAIL parameters to pass on (``BODY=8BITMIME``).
    mail_params: str
    recipients: tuple[Recipient, ...]
    #: When the message began to arrive (seconds since the epoch): the give-up time counts from here.
    received_at: float

    def to_json(self) -> bytes:
        data = {
            "id": self.id, "sender": self.sender, "mail_params": self.mail_params,
            "recipients": [[r.address, r.backend] for r in self.recipients], "received_at": self.received_at,
        }  # fmt: skip
        return json.dumps(data, ensure_ascii=False).encode("utf-8", "surrogateescape")

    @classmethod
    def from_json(cls, line: bytes) -> Envelope:
        data = json.loads(line.decode("utf-8", "surrogateescape"))
        recipients = tuple(Recipient(str(a), str(b)) for a, b in data["recipients"])
        return cls(str(data["id"]), str(data["sender"]), str(data["mail_params"]), recipients,
                   float(data["received_at"]))  # fmt: skip


@dataclass(frozen=True, slots=True)
class Outcome:
    """One delivery attempt's final word on some recipients (indices into the envelope's list)."""

    backend: str
    delivered: tuple[int, ...] = ()
    #: Refused for good (5xx), with the backend's reply.
    refused: tuple[tuple[int, str], ...] = ()


@dataclass(frozen=True, slots=True)
class Pending:
    """A spooled message as the delivery loop sees it."""

    envelope: Envelope
    #: Recipients (indices) that already have a record: delivered or refused for good.
    finished: frozenset[int]
    refused: tuple[tuple[int, str], ...]


def fsync_directory(path: Path) -> None:
    """Make a rename or a new file in ``path`` survive a crash (the entry lives in the directory)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class SpoolLocked(RuntimeError):
    """Another proxy process holds this spool directory: two delivery loops would deliver twice."""


class Spool:
    """The spool directory, held by one process at a time (``lock``, an flock the kernel drops when the
    process dies, even by SIGKILL). Blocking file calls: call the slow ones (``commit``, ``record``) in
    a thread."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.tmp, self.queue, self.failed = directory / "tmp", directory / "queue", directory / "failed"
        for path in (directory, self.tmp, self.queue, self.failed):
            path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._lock: int | None = os.open(directory / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock)
            self._lock = None
            raise SpoolLocked(f"another proxy is using the spool {directory}") from None
        self._sweep()

    def close(self) -> None:
        """Let another process take the spool."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _sweep(self) -> None:
        """Start-up: drop half-received messages and the records of messages already finished."""
        for leftover in self.tmp.iterdir():
            with contextlib.suppress(OSError):
                leftover.unlink()
        for record in self.queue.glob("*.done"):
            if not (self.queue / (record.name.split(".", 1)[0] + _MSG)).exists():
                with contextlib.suppress(OSError):
                    record.unlink()

    def begin(
        self, sender: str, mail_params: str, recipients: Iterable[Recipient], spool_id: str | None = None
    ) -> Draft:
        """A new message in ``tmp/``; write its body with ``Draft.write``, then ``commit`` it. ``spool_id``:
        a name derived from another message's (its notice), else a new one."""
        spool_id = spool_id or f"{time.time_ns():x}-{secrets.token_hex(4)}"
        envelope = Envelope(spool_id, sender, mail_params, tuple(recipients), time.time())
        return Draft(self, envelope)

    def pending(self) -> list[str]:
        """The ids of the messages waiting in ``queue/``, oldest first (ids start with the time)."""
        return sorted(p.name[: -len(_MSG)] for p in self.queue.glob("*" + _MSG))

    def load(self, spool_id: str) -> Pending | None:
        """A queued message's envelope and the outcomes recorded so far; None when it's gone."""
        try:
            with (self.queue / (spool_id + _MSG)).open("rb") as file:
                envelope = Envelope.from_json(file.readline())
        except (OSError, ValueError, KeyError, TypeError):
            return None
        finished: set[int] = set()
        refused: list[tuple[int, str]] = []
        for record in sorted(self.queue.glob(f"{spool_id}.*.done")):
            with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                data = json.loads(record.read_text("utf-8"))
                finished.update(int(i) for i in data["delivered"])
                for index, words in data["refused"]:
                    finished.add(int(index))
                    refused.append((int(index), str(words)))
        return Pending(envelope, frozenset(finished), tuple(refused))

    def holds(self, spool_id: str) -> bool:
        """Is a message of this id queued or kept in ``failed/``?"""
        name = spool_id + _MSG
        return (self.queue / name).exists() or (self.failed / name).exists()

    def open_body(self, spool_id: str) -> BinaryIO:
        """The message as received (dot-stuffed lines, without the final dot), after the envelope line."""
        file = (self.queue / (spool_id + _MSG)).open("rb")
        file.readline()
        return file

    def record(self, spool_id: str, outcome: Outcome) -> None:
        """Write one delivery's outcome durably (file fsync, rename, directory fsync). Blocking."""
        data = {"backend": outcome.backend, "delivered": list(outcome.delivered),
                "refused": [[i, words] for i, words in outcome.refused]}  # fmt: skip
        name = f"{spool_id}.{time.time_ns():x}{secrets.token_hex(2)}.done"
        staged = self.tmp / name
        with staged.open("wb") as file:
            file.write(json.dumps(data).encode())
            file.flush()
            os.fsync(file.fileno())
        os.rename(staged, self.queue / name)
        fsync_directory(self.queue)

    def finish(self, spool_id: str) -> None:
        """Every recipient delivered: remove the message, then its records. Blocking."""
        (self.queue / (spool_id + _MSG)).unlink(missing_ok=True)
        fsync_directory(self.queue)
        for record in self.queue.glob(f"{spool_id}.*.done"):
            record.unlink(missing_ok=True)

    def give_up(self, spool_id: str, why: Mapping[str, object]) -> None:
        """Move the message to ``failed/`` with the reasons (refused recipients, or too old). Blocking."""
        reason = self.failed / f"{spool_id}.why"
        reason.write_text(json.dumps(why, ensure_ascii=False), "utf-8")
        os.rename(self.queue / (spool_id + _MSG), self.failed / (spool_id + _MSG))
        fsync_directory(self.failed)
        fsync_directory(self.queue)
        for record in self.queue.glob(f"{spool_id}.*.done"):
            record.unlink(missing_ok=True)


class Draft:
    """A message being received into ``tmp/``: the envelope line first, then the body as it comes."""

    def __init__(self, spool: Spool, envelope: Envelope) -> None:
        self.spool = spool
        self.envelope = envelope
        self.path = spool.tmp / (envelope.id + _MSG)
        self._file: BinaryIO | None = self.path.open("xb")
        self._file.write(envelope.to_json() + b"\n")

    def write(self, data: bytes) -> None:
        if self._file is not None:
            self._file.write(data)

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
        self.path.unlink(missing_ok=True)

    def commit(self) -> None:
        """fsync, rename into ``queue/``, fsync ``queue/``: after this the message survives a crash. Blocking."""
        assert self._file is not None, "commit after abort"
        file, self._file = self._file, None
        try:
            with file:
                file.flush()
                os.fsync(file.fileno())
            os.rename(self.path, self.spool.queue / self.path.name)
            fsync_directory(self.spool.queue)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
