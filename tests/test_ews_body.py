"""The streamed CreateItem body: exactly the bytes a whole request would be, readable again from the
start (NTLM sends the body a second time after its challenge, seeking back as requests_ntlm does)."""

from __future__ import annotations

import base64
import random

from runners.connectors.ews_body import Pieces, StreamedBody


def _body() -> tuple[StreamedBody, bytes]:
    rng = random.Random(9)
    messages = [rng.randbytes(n) for n in (0, 1, 2, 3, 49_151, 49_152, 200_001)]
    pieces, whole = Pieces(), [b"<head>"]
    for message in messages:
        pieces.write(b"<t:Message><t:MimeContent>")
        pieces.base64(message)
        pieces.write(b"</t:MimeContent></t:Message>")
        whole += [b"<t:Message><t:MimeContent>", base64.b64encode(message), b"</t:MimeContent></t:Message>"]
    whole.append(b"</tail>")
    return StreamedBody(b"<head>", pieces, b"</tail>"), b"".join(whole)


def test_streamed_body_is_the_whole_request_in_blocks_of_any_size() -> None:
    for block in (1, 7, 16_384, 1 << 20):
        body, whole = _body()
        assert len(body) == len(whole)  # the Content-Length requests sends
        assert b"".join(iter(lambda: body.read(block), b"")) == whole  # noqa: B023
        assert body.tell() == len(whole)


def test_streamed_body_reads_again_after_seeking_back() -> None:
    body, whole = _body()
    body.read(100_000)
    body.seek(-body.tell(), 1)  # requests_ntlm: seek(-content_length, 1) before the second send
    assert body.read() == whole
    body.seek(12_345)
    assert body.read(10) == whole[12_345:12_355]
    assert "MimeContent" not in repr(body)
