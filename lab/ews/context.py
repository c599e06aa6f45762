"""What every operation needs: who asks, for which mailbox, and how folder ids and property paths
resolve."""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass

from lab.ews.config import EwsConfig
from lab.ews.soap import ItemError, SoapFault, q, schema_error, short, text_of
from lab.ews.store import Folder, Mailbox, PropKey, Store

#: DistinguishedFolderIdNameType
#: (https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/distinguishedfolderid).
DISTINGUISHED_IDS = frozenset(
    "calendar contacts deleteditems drafts inbox journal notes outbox sentitems tasks msgfolderroot "
    "root junkemail searchfolders voicemail recoverableitemsroot recoverableitemsdeletions "
    "recoverableitemsversions recoverableitemspurges archiveroot archivemsgfolderroot "
    "archivedeleteditems archiveinbox archiverecoverableitemsroot archiverecoverableitemsdeletions "
    "archiverecoverableitemsversions archiverecoverableitemspurges syncissues conflicts "
    "localfailures serverfailures recipientcache quickcontacts conversationhistory adminauditlogs "
    "todosearch mycontacts directory imcontactlist peopleconnect favorites".split()
)
#: ExtendedFieldURI PropertyType values (MapiPropertyTypeType, ExtendedFieldURI page:
#: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/extendedfielduri).
PROPERTY_TYPES = frozenset(
    "ApplicationTime ApplicationTimeArray Binary BinaryArray Boolean CLSID CLSIDArray Currency "
    "CurrencyArray Double DoubleArray Error Float FloatArray Integer IntegerArray Long LongArray "
    "Null Object ObjectArray Short ShortArray SystemTime SystemTimeArray String StringArray".split()
)
DISTINGUISHED_PROPERTY_SETS = frozenset(
    "Meeting Appointment Common PublicStrings Address InternetHeaders CalendarAssistant "
    "UnifiedMessaging Task Sharing".split()
)


class Unmodelled(SoapFault):
    """Something Exchange would accept that this emulator does not model: refused, and recorded, so
    that a test notices instead of passing against a behaviour Exchange does not have."""

    def __init__(self, what: str) -> None:
        super().__init__("ErrorInvalidRequest", f"The EWS emulator does not model {what}.")


class HangUp(Exception):
    """A poison item met mid-request: the server hangs up unanswered, what came before it saved."""


@dataclass(slots=True)
class Context:
    config: EwsConfig
    store: Store
    user: str
    mailbox_address: str | None  # impersonated, or the account's own; None: no mailbox
    now: Callable[[], datetime.datetime]
    #: an error code a test injected for the next item of this request's operation, if any
    item_fault: Callable[[], str | None] = lambda: None
    #: whether a test made this MIME a poison item (``EwsEmulator.poison``)
    poisoned: Callable[[bytes], bool] = lambda raw: False

    def mailbox(self, explicit: str | None = None) -> Mailbox:
        """The mailbox a request means: the one named in a DistinguishedFolderId's Mailbox, else the
        caller's. Another mailbox than the impersonated one is refused (the service account has no
        delegate rights here)."""
        if explicit:
            found = self.config.mailbox(explicit)
            if found is None:
                raise ItemError(
                    "ErrorNonExistentMailbox", "The SMTP address has no mailbox associated with it."
                )
            if self.mailbox_address is None or found[0].lower() != self.mailbox_address.lower():
                raise ItemError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return self.store.mailbox(found[0])
        if self.mailbox_address is None:
            # ErrorMissingEmailAddress (ResponseCode page): an account without a mailbox must name one.
            raise ItemError(
                "ErrorMissingEmailAddress",
                "When making a request as an account that does not have a mailbox, you must specify "
                "the mailbox primary SMTP address for any distinguished folder Ids.",
            )
        return self.store.mailbox(self.mailbox_address)

    def folder(self, node: ET.Element) -> tuple[Mailbox, Folder]:
        """A t:FolderId or t:DistinguishedFolderId, resolved in the caller's mailbox."""
        if node.tag == q("t:FolderId"):
            folder_id = node.get("Id", "")
            located = self.store.locate_folder(folder_id)
            if located is None:
                raise ItemError(
                    "ErrorInvalidIdMalformed" if not _looks_like_id(folder_id) else "ErrorFolderNotFound",
                    "Id is malformed."
                    if not _looks_like_id(folder_id)
                    else "The specified folder could not be found in the store.",
                )
            mailbox, folder = located
            self.mailbox(mailbox.address)
            return mailbox, folder
        name = node.get("Id", "")
        if name not in DISTINGUISHED_IDS:
            raise schema_error(
                f"The 'Id' attribute is invalid - The value '{name}' is invalid according to its datatype "
                "'DistinguishedFolderIdNameType' - The Enumeration constraint failed."
            )
        explicit = text_of(node.find(f"{q('t:Mailbox')}/{q('t:EmailAddress')}")) or None
        mailbox = self.mailbox(explicit)
        if name not in mailbox.distinguished:
            if name.startswith("archive"):
                # A mailbox without an online archive has no archive folders.
                raise ItemError(
                    "ErrorFolderNotFound", "The specified folder could not be found in the store."
                )
            raise Unmodelled(f"the distinguished folder '{name}'")
        return mailbox, mailbox.folders[mailbox.distinguished[name]]

    def folder_of(self, container: ET.Element | None) -> tuple[Mailbox, Folder] | None:
        """The one folder id inside ``container`` (ParentFolderId, SavedItemFolderId)."""
        if container is None:
            return None
        children = list(container)
        if len(children) != 1:
            raise schema_error(f"The element '{short(container.tag)}' must hold exactly one folder id.")
        return self.folder(children[0])


def _looks_like_id(value: str) -> bool:
    import base64
    import binascii

    try:
        return len(base64.b64decode(value, validate=True)) > 10
    except (binascii.Error, ValueError):
        return False


def prop_key(uri: ET.Element) -> PropKey:
    """An ExtendedFieldURI's identity, validated as Exchange does (ExtendedFieldURI page: a tag, or a
    property set with a name or an id; PropertyType required)."""
    kind = uri.get("PropertyType", "")
    if kind not in PROPERTY_TYPES:
        raise schema_error(f"The 'PropertyType' attribute is invalid - The value '{kind}' is invalid.")
    tag = uri.get("PropertyTag")
    set_id = uri.get("PropertySetId")
    distinguished = uri.get("DistinguishedPropertySetId")
    name = uri.get("PropertyName")
    number = uri.get("PropertyId")
    if tag is not None:
        if set_id or distinguished or name or number:
            raise ItemError(
                "ErrorInvalidExtendedProperty", "The extended property attribute combination is invalid."
            )
        try:
            value = int(tag, 16) if tag.lower().startswith("0x") else int(tag)
        except ValueError:
            raise ItemError(
                "ErrorInvalidExtendedProperty", "The extended property attribute combination is invalid."
            ) from None
        if not 0 < value <= 0xFFFF:
            raise ItemError(
                "ErrorInvalidExtendedProperty", "The extended property attribute combination is invalid."
            )
        return ("tag", f"0x{value:04x}", kind)
    if bool(set_id) == bool(distinguished) or bool(name) == bool(number):
        raise ItemError(
            "ErrorInvalidExtendedProperty", "The extended property attribute combination is invalid."
        )
    if distinguished and distinguished not in DISTINGUISHED_PROPERTY_SETS:
        raise schema_error(
            f"The 'DistinguishedPropertySetId' attribute is invalid - The value '{distinguished}' is invalid."
        )
    space = (set_id or distinguished or "").lower()
    return ("name", space, name if name else f"id:{number}", kind)


def uri_attributes(key: PropKey) -> dict[str, str]:
    """How Exchange echoes an ExtendedFieldURI back: the tag without leading zeros ("0xe07")."""
    if key[0] == "tag":
        return {"PropertyTag": hex(int(key[1], 16)), "PropertyType": key[2]}
    _, space, name, kind = key  # type: ignore[misc]
    attrs = (
        {"DistinguishedPropertySetId": next(d for d in DISTINGUISHED_PROPERTY_SETS if d.lower() == space)}
        if space in {d.lower() for d in DISTINGUISHED_PROPERTY_SETS}
        else {"PropertySetId": space}
    )
    if name.startswith("id:"):
        attrs["PropertyId"] = name[3:]
    else:
        attrs["PropertyName"] = name
    attrs["PropertyType"] = kind
    return attrs
