"""Typed rows the engine hands the ledger (``StateStore.record_*``) and gets back from it.

Target ids and recovery marks are opaque text: what the target adapter returned (an IMAP UID as
decimal text, an Exchange item id) and what its recovery strategy marked before an APPEND.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

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


class Sent(NamedTuple):
    """One message of a batch of APPENDs, as its ledger row will hold it (``BatchIntent``)."""

    src_key: str
    source: SourceFacts
    sha256: bytes
    #: The bytes the source served, which an IMAP target is sent (None: not known).
    sent_size: int | None


def pack_sent(messages: list[Sent]) -> tuple[str, bytes]:
    """A batch intent's messages as its ledger row keeps them: JSON, one list a message, and their
    SHA-256s end to end."""
    packed = json.dumps(
        [
            [s.src_key, (f := s.source).src_uid, f.size, f.internaldate, f.flags, s.sent_size]
            for s in messages
        ],
        separators=(",", ":"),
    )
    return packed, b"".join(s.sha256 for s in messages)


def unpack_sent(packed: str, digests: bytes) -> list[Sent]:
    """The messages ``pack_sent`` packed."""
    return [
        Sent(key, SourceFacts(uid, size, date, flags), digests[32 * n : 32 * n + 32], sent_size)
        for n, (key, uid, size, date, flags, sent_size) in enumerate(json.loads(packed))
    ]


@dataclass(frozen=True, slots=True)
class BatchIntent:
    """One APPEND about to be sent, for every message it carries: one ledger row (``batch_intents``)
    written before the bytes leave, deleted in the transaction that writes its messages' rows
    (``StateStore.record_sent``). While it stands its messages are pending."""

    folder_id: int
    uidvalidity: int
    target_name: str
    recovery_mark: str | None
    run_id: int
    messages: list[Sent]


#: What the target made of one message of a batch: (status, target id, reason), the reason None for a copy.
Result = tuple[str, str | None, str | None]


@dataclass(frozen=True, slots=True)
class SentBatch:
    """A batch intent the target answered: its id in the ledger and each message's result, in order."""

    intent_id: int
    batch: BatchIntent
    results: list[Result]


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
    #: A message of a batch intent (``BatchIntent``): the intent's id, and what its row is to hold
    #: once found. None for a pending ledger row (written per message, before the batch intents).
    intent_id: int | None = None
    sent: Sent | None = None


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
