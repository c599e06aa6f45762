"""Secret references (``env:NAME``, ``file:PATH`` or a literal), read only when needed, never shown."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from runners.errors import SecretError
from runners.safe_text import register_secret


@dataclass(frozen=True, slots=True)
class Secret:
    """A reference to a secret: ``env:NAME``, ``file:PATH`` or a literal value.

    The value is read only when ``reveal()`` is called, and never appears in ``repr``/``str``, so a
    plan can be logged, printed or stored without leaking it.
    """

    ref: str

    def reveal(self) -> str:
        """The value; remembered by ``runners.safe_text`` so that no server text can carry it back."""
        value = self._read()
        register_secret(value)
        return value

    def _read(self) -> str:
        if self.ref.startswith("env:"):
            name = self.ref[4:]
            value = os.environ.get(name)
            if value is None:
                raise SecretError(f"environment variable {name} is not set")
            return value
        if self.ref.startswith("file:"):
            path = self.ref[5:]
            try:
                return Path(path).read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                raise SecretError(f"secret file {path} can't be read: {exc.strerror}") from None
        return self.ref

    @property
    def described(self) -> str:
        """Where the secret comes from, safe to show (a literal shows as ``<literal>``)."""
        if self.ref.startswith(("env:", "file:")):
            return self.ref
        return "<literal>"

    def __repr__(self) -> str:
        return f"Secret({self.described})"

    __str__ = __repr__
