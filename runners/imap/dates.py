"""IMAP ``date-time`` strings: the one place they are written, and made acceptable to APPEND.

``format_date_time`` writes every date-time we produce (the Maildir source's file times, the POP3
source's header dates, rewritten variants below) in one form: ``01-Aug-2023 10:00:00 +0530``, the
day as two digits (RFC 3501 ``2DIGIT``; its other form, a space and one digit, is legal too), as
Dovecot sends it, English month names whatever the locale.

``canonical_date`` copies a source's INTERNALDATE verbatim when it is already in that form (the
usual case: a regex check, nothing parsed). Some servers answer with variants (a space-padded day,
no padding at all, a textual zone, a missing zone, ISO dates); those are rewritten into the
canonical form, same instant, so the target doesn't refuse the APPEND over a formatting detail.
Unparseable dates give None: the message is then appended without a date and the ledger notes why.

The ledger keeps whatever the source connector gave (``messages.internaldate``). A rerun never
compares it (a store written with another padding reruns the same); ``cutover verify`` compares the
instant it names with the target's INTERNALDATE.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache

_CANONICAL = re.compile(r"^[0-3]\d-[A-Z][a-z]{2}-\d{4} [0-2]\d:[0-5]\d:[0-6]\d [+-]\d{4}$")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_LOOSE = re.compile(
    r"^\s*(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d{1,2}):(\d{2}):(\d{2})(?: ([+-]\d{4}|[A-Z]{1,5}))?\s*$"
)


def canonical_date(value: str | None) -> str | None:
    if value is None or _CANONICAL.match(value):
        return value
    return _rewrite(value)


@lru_cache(maxsize=1024)
def _rewrite(value: str) -> str | None:
    moment = _parse(value)
    return None if moment is None else format_date_time(moment)


def format_date_time(moment: datetime) -> str:
    """``01-Aug-2023 10:00:00 +0530``: ``moment`` in its own zone (UTC when it has none)."""
    offset = moment.utcoffset()
    minutes = round(offset.total_seconds() / 60) if offset is not None else 0
    hours, rest = divmod(abs(minutes), 60)
    zone = f"{'-' if minutes < 0 else '+'}{hours:02d}{rest:02d}"
    return f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} {moment:%H:%M:%S} {zone}"


def parse_date_time(value: str) -> datetime | None:
    """The instant an INTERNALDATE (or a variant of one) names, aware; None when it doesn't parse."""
    return _parse(value)


def _parse(value: str) -> datetime | None:
    loose = _LOOSE.match(value)
    if loose:
        day, mon, year, hour, minute, second, zone = loose.groups()
        month = next((i for i, m in enumerate(_MONTHS, 1) if m.lower() == mon.lower()), None)
        if month is None:
            return None
        tz = UTC
        if zone and zone[0] in "+-":
            minutes = int(zone[1:3]) * 60 + int(zone[3:5])
            tz = timezone(timedelta(minutes=minutes if zone[0] == "+" else -minutes))
        try:
            return datetime(int(year), month, int(day), int(hour), int(minute), int(second), tzinfo=tz)
        except ValueError:
            return None
    from email.utils import parsedate_to_datetime  # rare variants only: email stays unloaded for a run

    try:
        parsed = parsedate_to_datetime(value)  # RFC 5322 style, "Tue, 2 Jan 2024 10:00:00 +0100"
    except (TypeError, ValueError, IndexError):
        parsed = None
    if parsed is None:
        try:
            parsed = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
