"""``[state] url``: a shared PostgreSQL state store, as the plan model holds it (``state_options`` reads it)."""

from __future__ import annotations

from dataclasses import dataclass

from runners.plan.secret import Secret


@dataclass(frozen=True, slots=True)
class StateServer:
    """Where a shared state store lives: ``postgresql://user@host:port/database`` (no password)."""

    url: str
    #: ``[state] password``: a secret reference (env:NAME, file:PATH), read only when connecting.
    password: Secret | None = None
