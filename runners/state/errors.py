"""The one error the state store raises: its database could not be opened, read or written."""

from __future__ import annotations

from pathlib import Path

from runners.errors import MigrationError, RunInterrupted


class StoreError(MigrationError):
    """The state store at ``path`` failed, for ``cause`` (the database's or the system's own words).

    The command line prints it as one line and exits 2: a corrupt ``state.db``, a state directory
    that is a file or not writable, a full disk. A store opened read-only raises it for any write.
    """

    def __init__(self, path: Path | str, cause: str, hint: str = "") -> None:
        self.path = str(path)
        self.cause = cause
        self.hint = hint
        super().__init__(f"state store {self.path}: {cause}" + (f" ({hint})" if hint else ""))


class LeaseLost(RunInterrupted):
    """This runner's lease on ``mailbox`` ended (another runner took it over, or it could not be renewed
    in time): it stops that mailbox at once and writes nothing more about it (``runners.state.fence``)."""

    def __init__(self, mailbox: str, why: str) -> None:
        self.mailbox = mailbox
        super().__init__(f"lease lost on {mailbox}: {why}")
