"""Outside text as literal Markdown, the same rule as the readiness report's (checks/render.py ``_md``):
no raw HTML, no emphasis, link or table-cell break, one line, no secret, no control character."""

from __future__ import annotations

import html
import re

from runners.safe_text import safe

#: Characters Markdown (and GitHub's tables) give a meaning to: backslash-escaped in a cell.
_MD_META = re.compile(r"([\\`*_\[\]|~#<>!])")


def md(text: object) -> str:
    """``text`` safe (``runners.safe_text.safe``), then escaped: ``<`` ``>`` ``&`` as entities, every
    metacharacter behind a backslash; a line's leading ``#``, ``-`` or ``1.`` can't start a block either."""
    escaped = html.escape(safe(text), quote=False)
    return _MD_META.sub(r"\\\1", escaped)
