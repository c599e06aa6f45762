"""Relative paths and secret references, anchored to the plan file's directory.

A plan is run from wherever the operator happens to be, so every relative path in it (state dir,
mailbox CSV, CA file, maildir root, ``file:`` secrets) means "next to the plan", never "in the
current directory".
"""

from __future__ import annotations

import os
from pathlib import Path

from runners.plan.secret import Secret


def resolve_path(base_dir: Path, value: str) -> Path:
    """``value`` as an absolute path; relative values are taken from ``base_dir``."""
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return Path(os.path.normpath(path))


def make_secret(ref: str, base_dir: Path) -> Secret:
    """A ``Secret`` for ``ref`` without reading it (a plan must load on a box without secrets).

    Raises ValueError with a message that never contains the secret itself.
    """
    if ref.startswith("env:"):
        if not ref[4:].strip():
            raise ValueError("env: needs a variable name (env:NAME)")
        return Secret(ref)
    if ref.startswith("file:"):
        if not ref[5:].strip():
            raise ValueError("file: needs a path (file:PATH)")
        # Anchored now: reveal() runs later, maybe from another working directory.
        return Secret("file:" + str(resolve_path(base_dir, ref[5:])))
    return Secret(ref)
