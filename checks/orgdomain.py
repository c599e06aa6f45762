"""The organisational domain of a mail domain (RFC 7489 3.2): one label below its public suffix.

The public suffix list comes bundled with the ``publicsuffixlist`` package (updated with each of
its releases) and is read offline. A name under a suffix the list doesn't know falls under the
list's default rule ``*``: its last label is the suffix (``lists.good.test`` → ``good.test``).
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _list() -> PublicSuffixList:
    return PublicSuffixList()  # parses the bundled copy once (~50 ms)


def organisational_domain(domain: str) -> str:
    """``mail.example.co.uk`` → ``example.co.uk``; a public suffix itself stays as it is."""
    name = domain.lower().rstrip(".")
    return _list().privatesuffix(name) or name
