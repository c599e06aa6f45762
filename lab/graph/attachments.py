"""Attachments: list, get (with contentBytes), add a small one, and upload sessions for large ones.

Pages: https://learn.microsoft.com/en-us/graph/api/message-list-attachments,
https://learn.microsoft.com/en-us/graph/api/attachment-get,
https://learn.microsoft.com/en-us/graph/api/message-post-attachments,
https://learn.microsoft.com/en-us/graph/api/attachment-createuploadsession,
https://learn.microsoft.com/en-us/graph/outlook-large-attachments (3 MB to 150 MB; PUT the bytes to
the pre-authenticated uploadUrl with Content-Range, no Authorization header; 200 with
NextExpectedRanges until the last range, then 201 with a Location).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

from lab.graph.context import Call, Reply, Tenant, iso
from lab.graph.errors import GraphError, bad_request, not_found
from lab.graph.folders import unknown_property
from lab.graph.mailbox import Attachment, new_id, utc_now
from lab.graph.messages import READ_ROLES, WRITE_ROLES, _attachments, check_size, find_message
from lab.graph.query import options
from lab.graph.resources import ATTACHMENT_PROPERTIES, attachment_json

_SESSION_FIELDS = frozenset({"attachmentType", "name", "size", "contentType", "isInline", "contentId"})
_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
SESSION_LIFETIME = dt.timedelta(
    hours=2
)  # docs: "the uploadUrl expires"; the example shows ~2 hours... (not stated)


@dataclass(slots=True)
class UploadSession:
    id: str
    secret: str
    app_id: str
    mailbox: str
    message_id: str  # immutable
    user_ref: str
    name: str
    size: int
    content_type: str
    is_inline: bool
    content_id: str | None
    expires: dt.datetime
    data: bytearray = field(default_factory=bytearray)
    lock: threading.Lock = field(default_factory=threading.Lock)


def list_attachments(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/message-list-attachments"""
    call.require(*READ_ROLES)
    opts = options(
        call, ("$select", "$top", "$skip"), ATTACHMENT_PROPERTIES, type_name="microsoft.graph.attachment"
    )
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        rows = [attachment_json(a) for a in message.attachments]
    if opts.select:
        rows = [
            {"@odata.type": r["@odata.type"], "id": r["id"], **{k: r[k] for k in opts.select}} for r in rows
        ]
    context = call.context_url(f"users('{params['user']}')/messages('{params['message']}')/attachments")
    return Reply(200, {"@odata.context": context, "value": rows[opts.skip :][: opts.top or None]})


def get_attachment(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/attachment-get"""
    call.require(*READ_ROLES)
    opts = options(call, ("$select",), ATTACHMENT_PROPERTIES, type_name="microsoft.graph.attachment")
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        found = next((a for a in message.attachments if a.id == params["attachment"]), None)
        if found is None:
            raise not_found(f"attachment {params['attachment']}")
        row = attachment_json(found)
    if opts.select:
        row = {"@odata.type": row["@odata.type"], "id": row["id"], **{k: row[k] for k in opts.select}}
    context = call.context_url(
        f"users('{params['user']}')/messages('{params['message']}')/attachments/$entity"
    )
    return Reply(200, {"@odata.context": context, **row})


def add_attachment(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/message-post-attachments
    a file attachment under 3 MB in one request."""
    call.require(*WRITE_ROLES)
    options(call, ())
    made = _attachments([call.json()])[0]
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        counted = message.size()
        message.attachments.append(made)
        try:
            check_size(tenant, mailbox, message, counted)
        except GraphError:
            message.attachments.remove(made)
            raise
        message.touch()
        mailbox.resized(message)
    tenant.count(mailbox.address, "attachment:add")
    context = call.context_url(
        f"users('{params['user']}')/messages('{params['message']}')/attachments/$entity"
    )
    return Reply(201, {"@odata.context": context, **attachment_json(made)})


def create_upload_session(tenant: Tenant, call: Call, params: dict[str, str]) -> Reply:
    """https://learn.microsoft.com/en-us/graph/api/attachment-createuploadsession"""
    call.require(*WRITE_ROLES)
    options(call, ())
    body = call.json()
    if set(body) != {"AttachmentItem"} or not isinstance(body["AttachmentItem"], dict):
        raise bad_request('createUploadSession takes {"AttachmentItem": {...}}.')
    item: dict[str, Any] = body["AttachmentItem"]
    extra = set(item) - _SESSION_FIELDS
    if extra:
        raise unknown_property(sorted(extra)[0], "microsoft.graph.attachmentItem")
    if item.get("attachmentType") != "file":
        raise bad_request("attachmentType must be 'file'.")
    size = item.get("size")
    if not isinstance(size, int) or size < 0:
        raise bad_request("AttachmentItem.size is required.")
    limits = tenant.config.limits
    if size < limits.upload_session_min:
        # The service's words for an upload session under 3 MB.
        raise GraphError(
            400,
            "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
            "Attachment size must be greater than the minimum size.",
        )
    if size > limits.upload_session_max:
        raise GraphError(
            400,
            "ErrorAttachmentSizeExceedsMaximum",
            "The attachment exceeds the maximum size of an upload session.",
        )  # docs silent on the code
    mailbox = call.mailbox
    assert mailbox is not None
    with mailbox.lock:
        message = find_message(mailbox, params["message"])
        if message.size() + size > mailbox.max_receive_size:
            raise GraphError(
                413, "ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."
            )
        session = UploadSession(
            id=new_id("AAMkAGSess"),
            secret=secrets.token_urlsafe(24),
            app_id=call.app.client_id,
            mailbox=mailbox.address,
            message_id=message.immutable_id,
            user_ref=params["user"],
            name=str(item.get("name") or "attachment"),
            size=size,
            content_type=str(item.get("contentType") or "application/octet-stream"),
            is_inline=bool(item.get("isInline", False)),
            content_id=item.get("contentId"),
            expires=utc_now() + SESSION_LIFETIME,
        )
    with tenant.lock:
        tenant.upload_sessions[session.id] = session
    tenant.count(mailbox.address, "attachment:session")
    return Reply(
        201,
        {
            "@odata.context": call.context_url("microsoft.graph.uploadSession"),
            # The shape of the published uploadUrl (Outlook REST v2.0 path), on the emulator's host.
            "uploadUrl": (
                f"{call.base_url}/api/v2.0/Users('{mailbox.user_id}@{tenant.config.tenant_id}')/Messages('{message.immutable_id}')"
                f"/AttachmentSessions('{session.id}')?authtoken={session.secret}"
            ),
            "expirationDateTime": iso(session.expires),
            "nextExpectedRanges": ["0-"],
        },
    )


def find_session(tenant: Tenant, session_id: str, secret: str) -> UploadSession:
    with tenant.lock:
        session: UploadSession | None = tenant.upload_sessions.get(session_id)
    if session is None or not secrets.compare_digest(session.secret, secret):
        raise GraphError(404, "ErrorItemNotFound", "The upload session was not found or has expired.")
    if session.expires <= utc_now():
        raise GraphError(404, "ErrorItemNotFound", "The upload session has expired.")
    return session


def cancel_session(tenant: Tenant, session: UploadSession) -> Reply:
    """DELETE on the upload URL ends the session (attachment-createuploadsession step 4: "Optional:
    Delete the upload session"; the answer's code is not shown there: 204 here)."""
    with tenant.lock:
        tenant.upload_sessions.pop(session.id, None)
    return Reply(204)


def upload_chunk(
    tenant: Tenant, session: UploadSession, headers: dict[str, str], data: bytes, base_url: str
) -> Reply:
    """https://learn.microsoft.com/en-us/graph/outlook-large-attachments
    One PUT of bytes to the upload URL. A range that doesn't start where the last ended, doesn't
    match the body's length or the session's size is refused (416 invalidRange, the generic
    codes of https://learn.microsoft.com/en-us/graph/errors; the large-attachments page names none) and the session keeps what it had."""
    if "authorization" in headers:
        # outlook-large-attachments: "Do not specify an Authorization request header".
        raise GraphError(
            401,
            "InvalidAuthenticationToken",
            "The upload URL is pre-authenticated: send no Authorization header.",
        )
    match = _RANGE.match(headers.get("content-range", ""))
    if match is None:
        raise bad_request("Content-Range 'bytes start-end/total' is required.", "invalidRange")
    start, end, total = (int(g) for g in match.groups())
    with session.lock:
        expected = len(session.data)
        if (
            total != session.size
            or start != expected
            or end < start
            or end - start + 1 != len(data)
            or end >= total
        ):
            raise GraphError(
                416,
                "invalidRange",
                f"The range bytes {start}-{end}/{total} is not the next expected range ({expected}-) of {session.size} bytes.",
            )
        session.data.extend(data)
        done = len(session.data) == session.size
    if not done:
        # The published answer mixes cases: ExpirationDateTime, nextExpectedRanges.
        mailbox_user = tenant.mailboxes[session.mailbox].user_id
        context = (
            f"{base_url}/api/v2.0/$metadata#Users('{mailbox_user}%40{tenant.config.tenant_id}')"
            f"/Messages('{session.message_id}')/AttachmentSessions/$entity"
        )
        return Reply(
            200,
            {
                "@odata.context": context,
                "ExpirationDateTime": iso(session.expires),
                "nextExpectedRanges": [str(len(session.data))],
            },
        )
    mailbox = tenant.mailboxes[session.mailbox]
    attachment = Attachment(
        id=new_id("AAMkAGAtt"),
        name=session.name,
        content_type=session.content_type,
        data=bytes(session.data),
        is_inline=session.is_inline,
        content_id=session.content_id,
    )
    with mailbox.lock:
        message = mailbox.message(session.message_id)
        if message is None:
            raise not_found("message of the upload session")
        counted = message.size()
        message.attachments.append(attachment)
        try:
            check_size(tenant, mailbox, message, counted)
        except GraphError:
            message.attachments.remove(attachment)
            raise
        message.touch()
        mailbox.resized(message)
    with tenant.lock:
        tenant.upload_sessions.pop(session.id, None)
    tenant.count(mailbox.address, "attachment:uploaded")
    location = (
        f"{base_url}/api/v2.0/Users('{mailbox.user_id}@{tenant.config.tenant_id}')/Messages('{session.message_id}')"
        f"/Attachments('{attachment.id}')"
    )
    return Reply(201, body=b"", headers={"Location": location})
