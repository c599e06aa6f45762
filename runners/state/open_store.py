"""The one place that picks the state store's database from the plan: PostgreSQL when ``[state] url``
is set (shared by runner hosts and cockpits), else SQLite at ``[state] dir``/state.db. Every command
opens its store here, so ``run``, ``status``, ``verify``, ``check``, ``tui``, ``audit``, ``switch`` and
``triage`` work against either."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runners.plan.model import Plan
from runners.state.backend import Backend, SqliteBackend
from runners.state.pg_sql import without_password
from runners.state.store import StateStore

if TYPE_CHECKING:
    from runners.plan.state_model import StateServer


def store_backend(plan: Plan, *, read_only: bool = False) -> Backend:
    """The plan's database, not opened yet (the password, a secret reference, is read now)."""
    return backend_at(plan.state_db, plan.state_server, read_only=read_only)


def open_store_at(state_db: Path, server: StateServer | None, *, read_only: bool = False) -> StateStore:
    """The store at ``server`` (PostgreSQL) or else the SQLite file ``state_db``: for code that keeps
    where the plan's store is rather than the plan (the proxy's writer thread, a captured password)."""
    return StateStore(backend_at(state_db, server, read_only=read_only))


def backend_at(state_db: Path, server: StateServer | None, *, read_only: bool = False) -> Backend:
    if server is None:
        return SqliteBackend(state_db, read_only=read_only)
    # Imported here, not at the top: psycopg costs 0.15 s of start-up that SQLite's users don't pay.
    from runners.state.pg_backend import PostgresBackend

    password = server.password.reveal() if server.password is not None else None
    return PostgresBackend(server.url, password, read_only=read_only)


def open_store(plan: Plan, *, read_only: bool = False) -> StateStore:
    """The plan's state store, created or upgraded unless ``read_only``."""
    return StateStore(store_backend(plan, read_only=read_only))


def store_exists(plan: Plan) -> bool:
    """Has anything run against the plan's store (then there is something to read)?"""
    if plan.state_server is None:
        return plan.state_db.exists()
    backend = store_backend(plan, read_only=True)
    try:
        return backend.exists()
    finally:
        backend.close()


def store_location(plan: Plan) -> str:
    """Where the plan's store is, as it may be shown (a path, or the URL without a password)."""
    if plan.state_server is None:
        return str(plan.state_db)
    return without_password(plan.state_server.url)
