"""Attachments added to a message after its creation: by one POST when small, through an upload
session from 3 MB on (https://learn.microsoft.com/graph/outlook-large-attachments).

An upload session's URL carries its own authorisation: the PUTs go without our token, as the
documentation asks, each at most 4 MB and a multiple of 320 KiB except the last, with
``Content-Range``; the last answers 201.
"""

from __future__ import annotations

from runners.connectors.graph_http import GraphHttp
from runners.connectors.graph_message import UPLOAD_SESSION_MAX, UPLOAD_SESSION_MIN, Attachment
from runners.errors import CommandError

PERMISSION = "Mail.ReadWrite"
#: 12 x 320 KiB: under the 4 MB a PUT may carry.
CHUNK = 12 * 320 * 1024


def upload_attachment(http: GraphHttp, message_url: str, attachment: Attachment) -> None:
    """Add ``attachment`` to the message at ``message_url``; raises the error Graph's answer means."""
    size = len(attachment.data)
    if size < UPLOAD_SESSION_MIN:
        operation = f"add attachment {attachment.name!r}"
        response = http.send("POST", f"{message_url}/attachments", operation, json=attachment.json())
        http.check(response, operation, PERMISSION)
        return
    if size > UPLOAD_SESSION_MAX:
        raise CommandError(http.server, f"attachment {attachment.name!r}",
                           f"{size} bytes: over the 150 MB an upload session takes", "TOOBIG")  # fmt: skip
    operation = f"createUploadSession {attachment.name!r}"
    response = http.send(
        "POST", f"{message_url}/attachments/createUploadSession", operation,
        json={"AttachmentItem": attachment.upload_item()},
    )  # fmt: skip
    upload_url = str(http.check(response, operation, PERMISSION).json()["uploadUrl"])
    for start in range(0, size, CHUNK):
        chunk = attachment.data[start : start + CHUNK]
        end = start + len(chunk) - 1
        put = f"upload {attachment.name!r} bytes {start}-{end}/{size}"
        answer = http.send(
            "PUT", upload_url, put, content=chunk, creates=True, authorised=False,
            headers={"Content-Range": f"bytes {start}-{end}/{size}", "Content-Type": "application/octet-stream"},
        )  # fmt: skip
        http.check(answer, put, PERMISSION)
