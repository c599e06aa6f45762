"""The store's SQL as PostgreSQL's driver takes it: ``?`` placeholders become ``%s``, and a literal
``%`` (``LIKE '%x'``) is doubled, because psycopg reads ``%`` as the start of a placeholder. Text in
quotes ('...', "...") keeps its ``?``. Pure and cached: the store repeats a few hundred statements."""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit


@lru_cache(maxsize=2048)
def placeholders(sql: str) -> str:
    """``sql`` with each ``?`` outside quotes as ``%s`` and every ``%`` as ``%%``."""
    out: list[str] = []
    quote = ""
    for char in sql:
        if char == "%":
            out.append("%%")
        elif quote:
            out.append(char)
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        else:
            out.append(char)
    return "".join(out)


def without_password(url: str) -> str:
    """The URL as it may be shown: any password (``user:pw@``, ``?password=``) left out."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostport = netloc.rpartition("@")
            netloc = f"{userinfo.partition(':')[0]}@{hostport}"
        query = urlencode(
            [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "password"]
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, ""))
    except ValueError:
        return "postgresql://(unreadable url)"


def has_password(url: str) -> bool:
    """Does the URL carry a password itself (it belongs in ``[state] password``)?"""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    userinfo = parts.netloc.rpartition("@")[0] if "@" in parts.netloc else ""
    return ":" in userinfo or any(k == "password" for k, _ in parse_qsl(parts.query, keep_blank_values=True))
