"""Typed rows the engine hands the ledger (``StateStore.record_*``) and gets back from it.

Target ids and recovery marks are opaque text: what the target adapter returned (an IMAP UID as
decimal text, an Exchange item id) and what its recovery strategy marked before an APPEND.
"""

from __future__ import annotations

from dataclasses import dataclass

from runners.model import MessageMeta, flag_text


@dataclass(frozen=True, slots=True)
class MessageRef:
    """Which ledger row: a source message inside one folder and one UIDVALIDITY."""

    folder_id: int
    uidvalidity: int
    src_key: str


@dataclass(frozen=True, slots=True)
class SourceFacts:
    """What the ledger keeps about the source message itself."""

    src_uid: int
    size: int
    internaldate: str | None
    flags: str

    @staticmethod
    def of(meta: MessageMeta) -> SourceFacts:
        return SourceFacts(meta.uid, meta.size, meta.internaldate, flag_text(meta.flags))


@dataclass(frozen=True, slots=True)
class Intent:
    """An APPEND about to be sent (status ``pending``), written before the bytes leave."""

    ref: MessageRef
    source: SourceFacts
    sha256: bytes
    target_name: str
    recovery_mark: str | None
    run_id: int
    #: The bytes the source served, which an IMAP target is sent (None: not known).
    sent_size: int | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What became of an intent: ``copied`` (with the target's id, when it said) or ``failed``."""

    ref: MessageRef
    status: str
    target_id: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class Unsent:
    """A message never appended: ``skipped`` or ``failed`` before APPEND, with the reason."""

    ref: MessageRef
    source: SourceFacts
    status: str
    reason: str
    run_id: int


@dataclass(frozen=True, slots=True)
class Matched:
    """A message found already on the target by content: copied without an APPEND."""

    ref: MessageRef
    source: SourceFacts
    sha256: bytes
    target_name: str
    target_id: str
    run_id: int
    #: The bytes the source served: the target's item holds the same (it matched by SHA-256).
    sent_size: int | None = None


@dataclass(frozen=True, slots=True)
class PendingIntent:
    """An intent left pending by an interrupted run, for the target's recovery strategy."""

    ref: MessageRef
    sha256: bytes | None
    target_name: str
    recovery_mark: str | None
    #: The run that sent it (an earlier run's: a crash, whose last APPEND the server may still be saving;
    #: the same run's: this job's own, or a holder's that died, see ``reconcile.resolve_pending``).
    run_id: int | None = None


@dataclass(frozen=True, slots=True)
class EarlierCopy:
    """A superseded row's copy on the target: the item made from (or matched to) source bytes of
    this SHA-256 under an older UIDVALIDITY (``runners.engine.reconcile.earlier_copies``)."""

    ref: MessageRef
    sha256: bytes
    target_id: str


@dataclass(frozen=True, slots=True)
class FailedMessage:
    """A message that failed in one run, for the end-of-folder report."""

    src_uid: int
    reason: str


@dataclass(frozen=True, slots=True)
class SyncedFolder:
    """A folder as the last complete pass left it (verification)."""

    id: int
    #: The source's UIDNEXT when that pass began; None before a pass completed.
    uidnext: int | None
