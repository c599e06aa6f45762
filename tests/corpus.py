"""Messages that real mailboxes hold, the awkward ones included, for engine tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

CRLF = "\r\n"


def message(subject: str, body: str = "Hello.", *, message_id: str | None = "auto", extra: str = "") -> bytes:
    mid = f"<{abs(hash(subject))}.{len(body)}@example.test>" if message_id == "auto" else message_id
    headers = [
        "From: Alice Example <alice@example.test>",
        "To: bob@example.test",
        f"Subject: {subject}",
        "Date: Tue, 02 Jan 2024 10:00:00 +0100",
    ]
    if mid:
        headers.append(f"Message-ID: {mid}")
    if extra:
        headers.append(extra)
    return (CRLF.join(headers) + CRLF + CRLF + body.replace("\n", CRLF) + CRLF).encode("utf-8")


def awkward_messages() -> list[bytes]:
    """Byte-exact oddities a migration must carry unchanged."""
    big_line = "x" * 20_000
    return [
        message("plain"),
        message("no message-id", message_id=None),
        message("no message-id, other body", "Different.", message_id=None),
        message("shares an id", "one", message_id="<same@example.test>"),
        message("shares an id", "two", message_id="<same@example.test>"),
        # Raw 8-bit header and body without any MIME declaration (common from old clients).
        "Subject: Grüße aus Köln\r\nFrom: jörg@example.test\r\n\r\nÄrger über Öl.\r\n".encode(),
        # Latin-1 bytes that aren't valid UTF-8.
        b"Subject: caf\xe9\r\nFrom: x@example.test\r\n\r\nna\xefve\r\n",
        # Bare LF line endings and no blank line at the end.
        b"Subject: bare LF\nFrom: y@example.test\n\nline one\nline two",
        # A line over 10,000 characters.
        message("long line", big_line),
        # Broken MIME: boundary never closed, bad encoded-word, bogus charset.
        (
            b"Subject: =?utf-8?B?broken?=\r\nMIME-Version: 1.0\r\n"
            b'Content-Type: multipart/mixed; boundary="XYZ"\r\n\r\n--XYZ\r\n'
            b"Content-Type: text/plain; charset=bogus-42\r\n\r\nhalf a part\r\n"
        ),
        # Headers only, no body at all.
        b"Subject: headers only\r\nFrom: z@example.test\r\n\r\n",
        # Not a mail at all.
        b"this is not an RFC 5322 message\r\n",
        # A base64 attachment.
        message(
            "attachment",
            "--B\nContent-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n"
            + ("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo=\n" * 200)
            + "--B--",
            extra='MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="B"',
        ),
    ]


def dates(count: int) -> list[datetime]:
    """Varied arrival dates across years and time zones."""
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    start = datetime(2009, 3, 1, 8, 15, 30, tzinfo=UTC)
    return [(start + timedelta(days=97 * i, seconds=3607 * i)).astimezone(zones[i % 3]) for i in range(count)]
