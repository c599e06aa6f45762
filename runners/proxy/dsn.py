"""Delivery status notifications (RFC 3464) for spooled mail that could not be delivered.

Once the proxy has answered ``250`` to a message, telling its sender about a failure is the proxy's
job (RFC 5321 4.4, 6.1): a recipient a backend refused for good, or a message still undelivered
after ``give_up_hours``. The notice is a ``multipart/report`` with a human part, the
``message/delivery-status`` part (one block per failed recipient, the backend's own words as the
diagnostic) and the original message's header (``text/rfc822-headers``: the body stays with the
operator, in the spool's ``failed/``). It is sent from the null sender, so it is never bounced in
turn; a message from the null sender gets no notice at all.

Pure: builds bytes; ``SpoolDelivery`` spools and delivers them like any message.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.errors import HeaderParseError
from email.headerregistry import Address, Group
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

#: An enhanced status code at the start of a reply's text (RFC 3463): "5.1.1 no such user here".
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
#: A reply's three-digit code at the start of the backend's words ("550 5.1.1 ...").
_CODE = re.compile(r"^([245])\d\d\b")
#: RFC 3463 4.4.7: the message was in the queue too long.
EXPIRED = "4.4.7"
#: How much of the original header a notice carries: enough to recognise the message.
MAX_HEADER_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class FailedRecipient:
    address: str
    #: The backend's words ("550 5.1.1 no such user here"), or why the proxy gave up.
    words: str
    #: The RFC 3463 status: from the words when they carry one, else from their reply code.
    status: str


def status_of(words: str, fallback: str = "5.0.0") -> str:
    """The enhanced status of a backend's reply ``words`` ("550 5.1.1 ..." → "5.1.1"; "554 no" → "5.0.0")."""
    code = _CODE.match(words)
    rest = words[code.end() :].lstrip() if code else words
    enhanced = _ENHANCED.match(rest)
    if enhanced:
        return ".".join(enhanced.groups())
    return f"{code.group(1)}.0.0" if code else fallback


def original_header(stuffed_body: bytes) -> bytes:
    """The header block of a message as the spool keeps it (dot-stuffed CRLF lines), unstuffed and
    cut to ``MAX_HEADER_BYTES`` at a line's end."""
    header = stuffed_body.split(b"\r\n\r\n", 1)[0] + b"\r\n"
    lines = [line[1:] if line.startswith(b".") else line for line in header.split(b"\r\n")]
    text = b"\r\n".join(lines)
    if len(text) > MAX_HEADER_BYTES:
        text = text[: text.rfind(b"\r\n", 0, MAX_HEADER_BYTES) + 2]
    return text


def compose(
    *,
    reporting_host: str,
    sender: str,
    spool_id: str,
    arrival: float,
    failed: Sequence[FailedRecipient],
    header: bytes,
    now: float,
) -> bytes:
    """The notice to ``sender`` for ``failed``, as CRLF lines (not yet dot-stuffed)."""
    notice = EmailMessage(policy=SMTP)
    notice["From"] = f"Mail Delivery System <MAILER-DAEMON@{reporting_host}>"
    notice["To"] = _recipient(sender)
    notice["Subject"] = "Undelivered Mail Returned to Sender"
    notice["Date"] = format_datetime(datetime.fromtimestamp(now, UTC))
    notice["Message-ID"] = make_msgid(domain=reporting_host)
    notice["Auto-Submitted"] = "auto-replied"  # RFC 3834: nobody answers this automatically
    human = _human_text(reporting_host, failed)
    notice.set_content(human, cte=None if human.isascii() else "quoted-printable")  # a 7-bit notice
    notice.make_mixed()
    notice.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    notice.set_boundary(f"=_{spool_id}")
    notice.attach(_status_part(reporting_host, spool_id, arrival, failed))
    notice.attach(_header_part(header))
    return notice.as_bytes()


def _recipient(sender: str) -> Address | Group:
    """The ``To`` header for the envelope sender as it is (an address the header syntax can't hold
    becomes an empty group: the envelope, not the header, carries the notice there)."""
    try:
        return Address(addr_spec=sender)
    except (ValueError, IndexError, HeaderParseError):
        return Group("undisclosed-recipients")


def _human_text(reporting_host: str, failed: Sequence[FailedRecipient]) -> str:
    lines = [
        f"This is the mail system at {reporting_host}.",
        "",
        "Your message could not be delivered to the following recipient(s):",
        "",
    ]
    lines += [f"  <{r.address}>: {r.words}" for r in failed]
    lines += ["", "The header of your message follows this report."]
    return "\n".join(lines) + "\n"


def _status_part(
    reporting_host: str, spool_id: str, arrival: float, failed: Sequence[FailedRecipient]
) -> EmailMessage:
    """``message/delivery-status``: the per-message fields, then one block per failed recipient."""
    part = EmailMessage(policy=SMTP)
    part["Content-Type"] = "message/delivery-status"
    per_message = EmailMessage(policy=SMTP)
    per_message["Reporting-MTA"] = f"dns; {reporting_host}"
    per_message["X-Cutover-Spool-Id"] = spool_id
    per_message["Arrival-Date"] = format_datetime(datetime.fromtimestamp(arrival, UTC))
    part.attach(per_message)
    for recipient in failed:
        block = EmailMessage(policy=SMTP)
        block["Final-Recipient"] = f"rfc822; {_one_line(recipient.address)}"
        block["Action"] = "failed"
        block["Status"] = recipient.status
        block["Diagnostic-Code"] = f"smtp; {_one_line(recipient.words)}"
        part.attach(block)
    return part


def _header_part(header: bytes) -> EmailMessage:
    # Quoted-printable: an original header may hold raw 8-bit bytes, and the notice stays 7-bit.
    part = EmailMessage(policy=SMTP)
    text = header.decode("utf-8", "replace").replace("\r\n", "\n")
    part.set_content(text, subtype="rfc822-headers", cte="quoted-printable")
    return part


def _one_line(text: str) -> str:
    """A status field's text: one line of US-ASCII (RFC 3464 fields are ``text``, no encoded-words)."""
    return " ".join(text.split()).encode("ascii", "backslashreplace").decode("ascii")
