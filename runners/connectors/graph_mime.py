"""A MIME tree cut out of the message's bytes, for building Graph's JSON message.

``email``'s parser turns the whole message into text and feeds it line by line: about a
millisecond a message and several copies of a large one held at once, for every create of the
JSON route. Here only header blocks go through ``email`` (compat32, headers only); bodies stay
where they are in the original bytes (offsets, not copies), multiparts are cut at their boundary
lines (RFC 2046 5.1.1), and a leaf's payload is decoded from its bytes when asked. A multipart
whose boundary never appears is kept as one leaf; one never closed ends at the end of the message
(as ``email`` reads both).
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
    #: The whole message, and where this part's body lies in it: parts are offsets, never copies
    #: (a 2 MB attachment cut out at each level of the tree was held three times over).
    source: bytes
    start: int
    end: int
    children: list[Part] = field(default_factory=list)
    parent: Part | None = None

    @property
    def raw(self) -> bytes:
        """The body as it is on the wire (transfer-encoded)."""
        return self.source[self.start : self.end]

    def payload(self) -> bytes:
        """The body with its Content-Transfer-Encoding undone."""
        encoding = str(self.headers.get("content-transfer-encoding", "")).strip().lower()
        view = memoryview(self.source)[self.start : self.end]
        try:
            if encoding == "base64":
                return binascii.a2b_base64(view)
            if encoding == "quoted-printable":
                return binascii.a2b_qp(view)
        except (binascii.Error, ValueError):
            pass
        finally:
            view.release()
        return self.raw

    def leaves(self, *, related: bool = False) -> list[tuple[Part, bool]]:
        """Every leaf below, in order, each with whether it sits inside a multipart/related."""
        if not self.children:
            return [(self, related)]
        inside = related or self.headers.get_content_type() == "multipart/related"
        return [leaf for child in self.children for leaf in child.leaves(related=inside)]


def parse(
    mime: bytes, parent: Part | None = None, depth: int = 0, start: int = 0, end: int | None = None
) -> Part:
    """The tree of ``mime`` (or of its part between ``start`` and ``end``)."""
    end = len(mime) if end is None else end
    match = _HEAD_END.search(mime, start, end)
    body_start = end if match is None else match.end()
    part = Part(
        _PARSER.parsebytes(mime[start:body_start], headersonly=True), mime, body_start, end, parent=parent
    )
    boundary = part.headers.get_boundary() if part.headers.get_content_maintype() == "multipart" else None
    if boundary and depth < 20:
        pieces = _split(mime, body_start, end, boundary.encode("utf-8", "surrogateescape"))
        if pieces is not None:
            part.children = [parse(mime, part, depth + 1, a, b) for a, b in pieces]
    return part


def _split(mime: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]] | None:
    """Where the body parts lie between the boundary lines of the body ``mime[start:end]``; None
    when there is no boundary line at all."""
    marker = b"--" + boundary
    pieces: list[tuple[int, int]] = []
    begin: int | None = None
    at = mime.find(marker, start, end)
    while at >= 0:
        line_end = mime.find(b"\n", at, end)
        line_end = end if line_end < 0 else line_end + 1
        rest = mime[at + len(marker) : line_end].rstrip(b"\r\n \t")
        if (at == start or mime[at - 1 : at] == b"\n") and rest in (b"", b"--"):
            if begin is not None:
                stop = at - 2 if mime[at - 2 : at] == b"\r\n" else at - 1
                pieces.append((begin, max(begin, stop)))
            if rest == b"--":  # the close delimiter: the epilogue is not a part
                return pieces
            begin = line_end
        at = mime.find(marker, line_end, end)
    if begin is None:
        return None
    pieces.append((begin, end))
    return pieces
