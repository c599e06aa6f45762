"""``[state] url`` and ``[state] password``: a PostgreSQL database as the state store, shared by runner
hosts and cockpits (``runners.state.open`` opens it). Without ``url`` the store is SQLite under
``[state] dir``. The password is a secret reference (``env:NAME``, ``file:PATH``), never in the URL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from runners.plan.paths import make_secret
from runners.plan.tables import Table

if TYPE_CHECKING:
    from runners.plan.state_model import StateServer

_SCHEMES = ("postgresql://", "postgres://")


def load_state_server(table: Table | None, base_dir: Path) -> StateServer | None:
    if table is None:
        return None
    url = table.string("url")
    ref = table.secret_ref("password")
    if url is None:
        if ref is not None:
            raise table.error("password", "is the password of [state] url, which is not set")
        return None
    if not url.startswith(_SCHEMES):
        raise table.error(
            "url", f"must be a PostgreSQL URL (postgresql://user@host:port/database), not {url!r}"
        )
    if _has_password(url):
        # Said without the URL: it holds the password.
        raise table.error(
            "url", "must not hold the password: put it in [state] password (env:NAME or file:PATH)"
        )
    try:
        password = None if ref is None else make_secret(ref, base_dir)
    except ValueError as exc:
        raise table.error("password", str(exc)) from None
    from runners.plan.state_model import StateServer  # only a plan with a shared store has one

    return StateServer(url, password)


def _has_password(url: str) -> bool:
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    userinfo = netloc.rpartition("@")[0]
    return ":" in userinfo or "password=" in url
