"""Secrets that other accounts could read, found the way ssh finds an unprotected key.

A ``file:`` secret readable or writable by group or others, or a plan (or mailbox CSV) that holds a
literal password and that group or others can read, is reported in words; the caller warns
(``cutover`` prints ``cutover: warning: ...`` before connecting) or, with ``[security]
strict_permissions = true``, the plan is refused. Only ``stat`` is used: secrets are never read here.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from runners.plan.model import Plan
from runners.plan.secret import Secret

#: Bits that let another account in: group or others may read, write or execute.
_OPEN_TO_OTHERS = 0o077


def exposure_problems(plan: Plan) -> list[str]:
    """Why each secret of ``plan`` may be exposed to other accounts (empty: none is)."""
    problems: dict[str, None] = {}  # ordered, each said once (a CSV with many literals)
    for secret, holder, what in _secrets(plan):
        if secret.ref.startswith("file:"):
            problem = _too_open(Path(secret.ref[5:]), f"the secret file for {what}")
        elif not secret.ref.startswith("env:") and not _templated(secret):
            problem = _too_open(holder, f"{holder}, which holds a literal password for {what},")
        else:
            problem = None
        if problem:
            problems.setdefault(problem, None)
    return list(problems)


def _too_open(path: Path, described: str) -> str | None:
    try:
        mode = stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return None  # missing or unreadable: revealing it will say so
    if not mode & _OPEN_TO_OTHERS:
        return None
    return (
        f"{described} is accessible by other accounts (permissions {mode:04o}): "
        f"chmod 600 {path} (it should be readable by its owner only)"
    )


def _templated(secret: Secret) -> bool:
    return "{user}" in secret.ref


def _secrets(plan: Plan) -> Iterator[tuple[Secret, Path, str]]:
    """Each secret with the file it is written in and what it is for."""
    for side, endpoint in (("source", plan.source), ("target", plan.target)):
        if endpoint.master_password is not None:
            yield endpoint.master_password, plan.path, f"[{side}] master_password"
        if endpoint.password is not None:
            if _templated(endpoint.password):  # one file per user: each is checked
                for entry in plan.mailboxes:
                    user = entry.source if side == "source" else entry.target
                    yield Secret(endpoint.password.ref.replace("{user}", user)), plan.path, f"{side} {user}"
            else:
                yield endpoint.password, plan.path, f"[{side}] password"
    for side, directory in (
        ("source", plan.readiness.source_directory),
        ("target", plan.readiness.target_directory),
    ):
        if directory is not None and directory.bind_password is not None:
            yield directory.bind_password, plan.path, f"[directory.{side}] bind_password"
    for entry in plan.mailboxes:
        holder = _origin_file(plan, entry.origin)
        for secret, what in ((entry.source_password, entry.source), (entry.target_password, entry.target)):
            if secret is not None:
                yield secret, holder, what
    if plan.state_server is not None and plan.state_server.password is not None:
        yield plan.state_server.password, plan.path, "[state] password"


def _origin_file(plan: Plan, origin: str) -> Path:
    """The file a mailbox row was read from (``list.csv:12``, as shown from the working directory)."""
    name = origin.rpartition(":")[0]
    return Path(name) if name else plan.path
