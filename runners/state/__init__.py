"""The state store: runs, mailboxes, folders, the message ledger, and what the cockpit and the
checks keep beside them. The only place SQL is written (``runners.state.backend`` holds what differs
between databases); callers get typed rows, and its failures are one error, ``StoreError``."""

from runners.state.errors import StoreError
from runners.state.store import LedgerEntry, StateStore

__all__ = ["LedgerEntry", "StateStore", "StoreError"]
