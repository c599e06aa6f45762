"""A MIME tree cut out of the message's bytes, for building Graph's JSON message.

``email``'s parser turns the whole message into text and feeds it line by line: about a
millisecond a message and several copies of a large one held at once, for every create of the
JSON route. Here only header blocks go through ``email`` (compat32, headers only); bodies stay
slices of the original bytes, multiparts are cut at their boundary lines (RFC 2046 5.1.1), and a
leaf's payload is decoded from its bytes when asked. A multipart whose boundary never appears is
kept as one leaf; one never closed ends at the end of the message (as ``email`` reads both).
"""

from __future__ import annotations

import binascii
import re
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser

_HEAD_END = re.compile(rb"\r?\n\r?\n")
_PARSER = BytesParser()


@dataclass(slots=True)
class Part:
    #: The part's header block, parsed (compat32): content type, disposition, filename, charset.
    headers: Message
    #: The body as it is on the wire (transfer-encoded).
    raw: bytes
    children: list[Part] = field(default_factory=list)
    parent: Part | None = None

    def payload(self) -> bytes:
        """The body with its Content-Transfer-Encoding undone."""
        encoding = str(self.headers.get("content-transfer-encoding", "")).strip().lower()
        try:
            if encoding == "base64":
                return binascii.a2b_base64(self.raw)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(self.raw)
        except (binascii.Error, ValueError):
            pass
        return self.raw

    def leaves(self, *, related: bool = False) -> list[tuple[Part, bool]]:
        """Every leaf below, in order, each with whether it sits inside a multipart/related."""
        if not self.children:
            return [(self, related)]
        inside = related or self.headers.get_content_type() == "multipart/related"
        return [leaf for child in self.children for leaf in child.leaves(related=inside)]


def parse(mime: bytes, parent: Part | None = None, depth: int = 0) -> Part:
    match = _HEAD_END.search(mime)
    head, body = (mime, b"") if match is None else (mime[: match.end()], mime[match.end() :])
    part = Part(_PARSER.parsebytes(head, headersonly=True), body, parent=parent)
    boundary = part.headers.get_boundary() if part.headers.get_content_maintype() == "multipart" else None
    if boundary and depth < 20:
        pieces = _split(body, boundary.encode("utf-8", "surrogateescape"))
        if pieces is not None:
            part.children = [parse(piece, part, depth + 1) for piece in pieces]
    return part


def _split(body: bytes, boundary: bytes) -> list[bytes] | None:
    """The body parts between the boundary lines; None when there is no boundary line at all."""
    marker = b"--" + boundary
    pieces: list[bytes] = []
    start: int | None = None
    at = body.find(marker)
    while at >= 0:
        line_end = body.find(b"\n", at)
        line_end = len(body) if line_end < 0 else line_end + 1
        rest = body[at + len(marker) : line_end].rstrip(b"\r\n \t")
        if (at == 0 or body[at - 1 : at] == b"\n") and rest in (b"", b"--"):
            if start is not None:
                end = at - 2 if body[at - 2 : at] == b"\r\n" else at - 1
                pieces.append(body[start : max(start, end)])
            if rest == b"--":  # the close delimiter: the epilogue is not a part
                return pieces
            start = line_end
        at = body.find(marker, line_end)
    if start is None:
        return None
    pieces.append(body[start:])
    return pieces
