"""Errors of the cockpit's own inputs (the user's keymap file), apart from the migration's error tree.

A bad ``keys.toml`` is not a migration failure: nothing in ``runners`` or ``checks`` raises or
catches it. The CLI reports it like a plan error, in one line with file:line and exit 2.
"""

from __future__ import annotations


class CockpitError(Exception):
    """The cockpit can't start with what it was given; the message is the one line the CLI prints."""
