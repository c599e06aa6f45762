"""Twisted's POP3 and SMTP modules, imported without a DNS lookup.

``twisted.mail.smtp`` (which ``twisted.mail.pop3`` imports) sets its default host name with
``socket.getfqdn()`` when it is imported, and that can ask the system's DNS servers. The lab never
talks to anything off loopback, so the import sees ``localhost`` instead; every lab server sets
its own name anyway.
"""

from __future__ import annotations

import socket
import sys


def _local_name(name: str = "") -> str:
    return "localhost"


if "twisted.mail.smtp" not in sys.modules:
    _getfqdn = socket.getfqdn
    socket.getfqdn = _local_name
    try:
        from twisted.mail import smtp as _smtp  # noqa: F401
    finally:
        socket.getfqdn = _getfqdn

from twisted.mail import pop3, smtp  # noqa: E402

__all__ = ["pop3", "smtp"]
