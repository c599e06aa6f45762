"""Items in an Exchange folder over EWS: create from MIME, find by our key, read back what was kept.

CreateItem with MimeContent and MessageDisposition SaveOnly
(learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createitem-operation-email-message)
carries, in the same request, the MAPI properties that make the item what the source message was
(``runners.connectors.exchange_props``): PR_MESSAGE_FLAGS (else Exchange stores a draft), the
received and sent times, the follow-up flag, the last verb, the categories and our key. Nothing is
set afterwards, so no second call can fail half-way.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from xml.sax.saxutils import escape, quoteattr

from runners.connectors import exchange_props as props
from runners.connectors.ews_body import Pieces
from runners.connectors.ews_wire import FILL_MARK, Element, Fill, m, mn, t, tn
from runners.kept import ImapState, KeptItem, content_of, iso_utc_seconds
from runners.model import AppendItem

#: Bytes of SOAP around one item of a CreateItem (properties, categories, tags), beyond its base64.
ITEM_OVERHEAD = 2048
#: Bytes of envelope and headers of a request.
REQUEST_OVERHEAD = 4096
#: Items per FindItem page, keys per FindItem restriction, items per GetItem with MIME.
PAGE = 1000
KEYS_PER_FIND = 100
MIME_PER_GET = 20

_SYSTEM_TIME = "%Y-%m-%dT%H:%M:%SZ"


@dataclass(frozen=True, slots=True)
class Prop:
    """One extended property as EWS names it (ExtendedFieldURI)."""

    tag: int | None
    kind: str  # "Integer" | "SystemTime" | "String"
    name: str | None = None

    def uri(self) -> Element:
        if self.tag is not None:
            return t("ExtendedFieldURI", PropertyTag=f"0x{self.tag:04X}", PropertyType=self.kind)
        return t(
            "ExtendedFieldURI",
            PropertySetId=props.KEY_PROPERTY_SET,
            PropertyName=self.name or "",
            PropertyType=self.kind,
        )

    def uri_xml(self) -> bytes:
        """``uri()`` as the bytes of a request (the prefix ``t`` is the envelope's)."""
        if self.tag is not None:
            return b'<t:ExtendedFieldURI PropertyTag="0x%04X" PropertyType="%s"/>' % (
                self.tag,
                self.kind.encode(),
            )
        return b'<t:ExtendedFieldURI PropertySetId=%s PropertyName=%s PropertyType="%s"/>' % (
            quoteattr(props.KEY_PROPERTY_SET).encode(),
            quoteattr(self.name or "").encode(),
            self.kind.encode(),
        )

    def matches(self, uri: Element) -> bool:
        if self.tag is not None:
            value = uri.get("PropertyTag") or ""
            try:
                return int(value, 0) == self.tag
            except ValueError:
                return False
        return (uri.get("PropertyName") == self.name) and (
            (uri.get("PropertySetId") or "").lower() == props.KEY_PROPERTY_SET.lower()
        )


KEY = Prop(None, "String", props.KEY_PROPERTY_NAME)
FLAGS = Prop(props.PR_MESSAGE_FLAGS, "Integer")
RECEIVED = Prop(props.PR_MESSAGE_DELIVERY_TIME, "SystemTime")
SENT = Prop(props.PR_CLIENT_SUBMIT_TIME, "SystemTime")
FLAG_STATUS = Prop(props.PR_FLAG_STATUS, "Integer")
LAST_VERB = Prop(props.PR_LAST_VERB_EXECUTED, "Integer")
LAST_VERB_TIME = Prop(props.PR_LAST_VERB_EXECUTION_TIME, "SystemTime")
READ_BACK = (KEY, FLAGS, RECEIVED, SENT, FLAG_STATUS, LAST_VERB)


def encoded_size(item: AppendItem) -> int:
    """What one item adds to a CreateItem request: its MIME in base64 (4/3), plus the SOAP around it."""
    return (len(item.body) + 2) // 3 * 4 + ITEM_OVERHEAD


def chunks(items: Sequence[AppendItem], max_items: int, max_bytes: int) -> Iterator[list[AppendItem]]:
    """Consecutive runs of ``items`` that each fit one request (an item too big alone goes alone)."""
    run: list[AppendItem] = []
    size = REQUEST_OVERHEAD
    for item in items:
        need = encoded_size(item)
        if run and (len(run) >= max_items or size + need > max_bytes):
            yield run
            run, size = [], REQUEST_OVERHEAD
        run.append(item)
        size += need
    if run:
        yield run


def _time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime(_SYSTEM_TIME)


def _text(value: str) -> bytes:
    return escape(value).encode("utf-8")


def _extended(prop: Prop, value: str) -> bytes:
    return b"<t:ExtendedProperty>%s<t:Value>%s</t:Value></t:ExtendedProperty>" % (
        prop.uri_xml(),
        _text(value),
    )


def write_message(out: Pieces, item: AppendItem) -> None:
    """One ``t:Message`` of a CreateItem as request bytes: the MIME and every property, in schema
    order. The MIME is encoded only while the request is sent (``ews_body.StreamedBody``)."""
    wanted = props.props_for(item)
    out.write(b"<t:Message><t:MimeContent>")
    out.base64(item.body)
    out.write(b"</t:MimeContent>")
    if wanted.categories:
        out.write(b"<t:Categories>")
        for category in wanted.categories:
            out.write(b"<t:String>%s</t:String>" % _text(category))
        out.write(b"</t:Categories>")
    out.write(_extended(FLAGS, str(wanted.message_flags)))
    if wanted.received is not None:
        out.write(_extended(RECEIVED, _time(wanted.received)))
    if wanted.sent is not None:
        out.write(_extended(SENT, _time(wanted.sent)))
    if wanted.flag_status is not None:
        out.write(_extended(FLAG_STATUS, str(wanted.flag_status)))
    if wanted.last_verb is not None:
        out.write(_extended(LAST_VERB, str(wanted.last_verb)))
        if wanted.last_verb_time is not None:
            out.write(_extended(LAST_VERB_TIME, _time(wanted.last_verb_time)))
    out.write(_extended(KEY, wanted.key))
    out.write(b"</t:Message>")


def create_request(folder: Element, items: Sequence[AppendItem]) -> tuple[Element, Fill]:
    """A CreateItem of ``items`` into ``folder``: the payload, whose ``m:Items`` the returned ``Fill``
    writes into the request bytes (``Wire.call(..., fill=...)``)."""
    request = m("CreateItem", MessageDisposition="SaveOnly")
    saved = m("SavedItemFolderId")
    saved.append(folder)
    request.append(saved)
    request.append(m("Items", FILL_MARK))

    def fill(out: Pieces) -> None:
        for item in items:
            write_message(out, item)

    return request, fill


def created_id(answer: Element) -> str | None:
    items = answer.find(mn("Items"))
    if items is None or not len(items):
        return None
    item_id = items[0].find(tn("ItemId"))
    return None if item_id is None else item_id.get("Id")


def _shape(extra: Sequence[Prop], fields: Sequence[str] = ()) -> Element:
    shape = m("ItemShape")
    shape.append(t("BaseShape", "IdOnly"))
    more = t("AdditionalProperties")
    for uri in fields:
        more.append(t("FieldURI", FieldURI=uri))
    for prop in extra:
        more.append(prop.uri())
    shape.append(more)
    return shape


def find_request(folder_id: str, offset: int, keys: Sequence[str] = (), *, full: bool) -> Element:
    """FindItem in one folder: by our key (``keys``: a restriction on it), or every item."""
    request = m("FindItem", Traversal="Shallow")
    fields = ("item:Size", "item:Categories") if full else ()
    request.append(_shape(READ_BACK if full else (KEY,), fields))
    request.append(
        m("IndexedPageItemView", MaxEntriesReturned=str(PAGE), Offset=str(offset), BasePoint="Beginning")
    )
    if keys:
        restriction = m("Restriction")
        either = t("Or") if len(keys) > 1 else restriction
        for key in keys:
            equal = t("IsEqualTo")
            equal.append(KEY.uri())
            constant = t("FieldURIOrConstant")
            constant.append(t("Constant", Value=key))
            equal.append(constant)
            either.append(equal)
        if either is not restriction:
            restriction.append(either)
        request.append(restriction)
    parents = m("ParentFolderIds")
    parents.append(t("FolderId", Id=folder_id))
    request.append(parents)
    return request


def page_items(answer: Element) -> tuple[list[Element], bool]:
    """The items of one FindItem page, and whether it was the last."""
    page = answer.find(mn("RootFolder"))
    if page is None:
        return [], True
    found = page.find(tn("Items"))
    items = list(found) if found is not None else []
    return items, page.get("IncludesLastItemInRange", "true") == "true" or not items


def item_id(item: Element) -> str:
    element = item.find(tn("ItemId"))
    return "" if element is None else element.get("Id") or ""


def extended_values(item: Element) -> dict[Prop, str]:
    out: dict[Prop, str] = {}
    for element in item.findall(tn("ExtendedProperty")):
        uri = element.find(tn("ExtendedFieldURI"))
        value = element.find(tn("Value"))
        if uri is None or value is None:
            continue
        for prop in READ_BACK:
            if prop.matches(uri):
                out[prop] = value.text or ""
    return out


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def kept_of(item: Element, mime: bytes | None) -> KeptItem:
    """What Exchange keeps of one item (FindItem's properties; with ``mime``, its rendered content)."""
    values = extended_values(item)
    flags = _int(values.get(FLAGS)) or 0
    verb = _int(values.get(LAST_VERB))
    categories_element = item.find(tn("Categories"))
    categories = (
        [c.text or "" for c in categories_element.findall(tn("String"))]
        if categories_element is not None
        else []
    )
    size = item.find(tn("Size"))
    state = ImapState(
        read=bool(flags & props.MSGFLAG_READ),
        flagged=_int(values.get(FLAG_STATUS)) == props.FLAG_STATUS_FLAGGED,
        answered=verb in (props.VERB_REPLY, 103),
        forwarded=verb == props.VERB_FORWARD,
        draft=bool(flags & props.MSGFLAG_UNSENT),
        categories=tuple(sorted(dict.fromkeys(categories), key=str.lower)),
    )
    content = content_of(mime) if mime is not None else None
    return KeptItem(
        key=values.get(KEY, ""),
        received=iso_utc_seconds(values.get(RECEIVED)),
        sent=iso_utc_seconds(values.get(SENT)),
        state=state,
        route="mime",
        size=_int(size.text if size is not None else None) or 0,
        headers=content.headers if content else None,
        bodies=content.bodies if content else None,
        attachments=content.attachments if content else None,
    )


def mime_request(ids: Sequence[str]) -> Element:
    """GetItem of the MIME Exchange renders for each item (never the bytes it received)."""
    request = m("GetItem")
    shape = m("ItemShape")
    shape.append(t("BaseShape", "IdOnly"))
    shape.append(t("IncludeMimeContent", "true"))
    request.append(shape)
    item_ids = m("ItemIds")
    for one in ids:
        item_ids.append(t("ItemId", Id=one))
    request.append(item_ids)
    return request


def mime_of(answer: Element) -> bytes | None:
    items = answer.find(mn("Items"))
    if items is None or not len(items):
        return None
    mime = items[0].find(tn("MimeContent"))
    if mime is None or not mime.text:
        return None
    return base64.b64decode(mime.text)
