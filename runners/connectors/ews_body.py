"""A request body made while it is sent: a CreateItem's MIME goes out base64-encoded chunk by chunk.

A CreateItem of 10 MB of messages would otherwise be 13 MB of request bytes beside the messages
themselves, in every worker at once. ``StreamedBody`` is a file-like body of exact length (requests
sends a Content-Length, as for a whole body, not chunked encoding) that encodes each message's
bytes as they are read, 64 KiB at a time. It can be read again from the
start (``seek``): NTLM sends the body a second time on the same connection after the challenge
(requests_ntlm seeks back), Basic and OAuth send it once.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

#: Raw bytes encoded per step (a multiple of 3, so the pieces join into one valid base64 text).
_RAW_STEP = 48 * 1024


class _Base64:
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __len__(self) -> int:
        return (len(self.data) + 2) // 3 * 4


class Pieces:
    """What a request body is made of, in order: bytes as they are, and bytes to send in base64."""

    def __init__(self) -> None:
        self.parts: list[bytes | _Base64] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def base64(self, data: bytes) -> None:
        self.parts.append(_Base64(data))


class StreamedBody:
    """A file-like request body (``read``, ``tell``, ``seek``, ``len``) produced from ``Pieces``."""

    def __init__(self, head: bytes, pieces: Pieces, tail: bytes) -> None:
        self.parts: list[bytes | _Base64] = [head, *pieces.parts, tail]
        self.length = sum(len(p) for p in self.parts)
        self.position = 0
        self._chunks = self._produce()
        self._pending, self._offset = b"", 0

    def __len__(self) -> int:
        return self.length

    def __repr__(self) -> str:  # what a library's debug log would print: never the messages
        return f"<request body, {self.length} bytes>"

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.position + offset if whence == 1 else self.length + offset
        target = max(0, min(target, self.length))
        if target < self.position:
            self.position, self._chunks, self._pending, self._offset = 0, self._produce(), b"", 0
        while self.position < target:
            self.read(min(target - self.position, 1 << 20))
        return self.position

    def read(self, size: int = -1) -> bytes:
        want = self.length - self.position if size is None or size < 0 else size
        out: list[bytes] = []
        while want > 0:
            if self._offset >= len(self._pending):
                self._pending, self._offset = next(self._chunks, b""), 0
                if not self._pending:
                    break
            taken = self._pending[self._offset : self._offset + want]
            self._offset += len(taken)
            out.append(taken)
            want -= len(taken)
        data = b"".join(out)
        self.position += len(data)
        return data

    def _produce(self) -> Iterator[bytes]:
        for part in self.parts:
            if isinstance(part, bytes):
                yield part
                continue
            view = memoryview(part.data)
            for start in range(0, len(view), _RAW_STEP):
                yield base64.b64encode(view[start : start + _RAW_STEP])
