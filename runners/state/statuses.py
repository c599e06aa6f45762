"""Every status the state store keeps, as one enum per column.

They are ``StrEnum``s so that a member is the very text stored in the column (``"copied"``), compares
equal to it, and serialises to it in JSON: readers written before the enums (SQL, the cockpit, scripts
over ``--output json``) keep working. ``schema.sql`` lists the same values beside each column.
"""

from __future__ import annotations

from enum import StrEnum

#: The condition of the ledger's index of rows not copied (``messages_not_copied`` in ``schema.sql``,
#: partial): SQLite uses such an index only for a query that states that condition word for word, so
#: every query of rows not copied carries it, even where its own terms imply it (``status = 'pending'``).
NOT_COPIED = "status != 'copied'"


def not_copied_source(dialect: str, alias: str = "") -> str:
    """``messages`` as the FROM item of a read of a folder's rows not copied. With no statistics,
    SQLite's planner prefers the primary key's ``folder_id`` prefix for a query on the folder and
    its status, a pass over every row of the folder (61 ms for 300,000 rows, where the partial index
    answers in 0.1): so it is named. PostgreSQL chooses by its statistics and has no such clause."""
    name = f"messages {alias}" if alias else "messages"
    return f"{name} INDEXED BY messages_not_copied" if dialect == "sqlite" else name


class MessageStatus(StrEnum):
    """``messages.status``: where one source message stands."""

    PENDING = "pending"  # the APPEND (or create) is about to be sent: a batch intent (older: a row)
    COPIED = "copied"
    SKIPPED = "skipped"  # left on the source on purpose (over the target's limit, ...)
    FAILED = "failed"  # the source could not deliver it, or the target refused it
    SUPERSEDED = "superseded"  # from an older UIDVALIDITY, kept until a pass under the new one completes
    WAIVED = "waived"  # an operator decided not to copy it (`cutover skip`)


class AttemptStatus(StrEnum):
    """``message_attempts.status``: an outcome that left a message not copied."""

    FAILED = "failed"
    SKIPPED = "skipped"
    WAIVED = "waived"


class MailboxState(StrEnum):
    """``mailboxes.state``."""

    PENDING = "pending"  # not started, or interrupted: the next run continues it
    RUNNING = "running"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    OK = "ok"
    PARTIAL = "partial"  # done, with messages or folders not copied (each with its reason)
    FAILED = "failed"  # the mailbox as a whole could not be migrated (login refused, ...)


class RunStatus(StrEnum):
    """``runs.status``."""

    RUNNING = "running"
    OK = "ok"
    PARTIAL = "partial"
    FAILED = "failed"
    INTERRUPTED = "interrupted"


class RunKind(StrEnum):
    """``runs.kind``."""

    FULL = "full"
    DELTA = "delta"
    RETRY = "retry"  # only what failed before (`--retry-failed`)


class ControlAction(StrEnum):
    """``controls.action``."""

    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"


class CheckState(StrEnum):
    """``check_results.state``."""

    OK = "ok"
    ERROR = "error"
    SKIPPED = "skipped"


class StepStatus(StrEnum):
    """``wave_steps.status``: where a step of a wave's cutover window stands."""

    STARTED = "started"
    DONE = "done"
    REFUSED = "refused"  # an interlock or a condition that didn't hold
    FAILED = "failed"  # the step could not do its work (a server refused, unreachable, ...)
