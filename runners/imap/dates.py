"""INTERNALDATE strings as APPEND accepts them.

Copied verbatim when the source already speaks RFC 3501's ``date-time`` (the usual case: a regex
check, nothing parsed). Some servers answer with variants (no leading space on the day, a textual
zone, a missing zone, ISO dates); those are rewritten into the canonical form, same instant, so
the target doesn't refuse the APPEND over a formatting detail. Unparseable dates give None: the
message is then appended without a date and the ledger notes why.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from email.utils import parsedate_to_datetime
from functools import lru_cache

_CANONICAL = re.compile(r"^[ 0-3]\d-[A-Z][a-z]{2}-\d{4} [0-2]\d:[0-5]\d:[0-6]\d [+-]\d{4}$")
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
    if moment is None:
        return None
    offset = moment.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    return f"{moment.day:2d}-{_MONTHS[moment.month - 1]}-{moment.year:04d} {moment:%H:%M:%S} {zone}"


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
