"""The state store: one SQLite file (WAL) holding runs, mailboxes, folders and the message ledger."""

from runners.state.store import LedgerEntry, StateStore

__all__ = ["LedgerEntry", "StateStore"]
