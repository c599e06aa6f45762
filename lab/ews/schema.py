"""The part of Exchange's EWS schema (messages.xsd, types.xsd) this emulator accepts.

Each element the emulator understands is listed with its attributes and child elements; any other
element or attribute in a request is refused with ErrorSchemaValidation, as Exchange's schema
validation refuses what its schema does not declare (ErrorSchemaValidation in ResponseCode:
https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/responsecode).
Where Exchange's schema allows something this emulator does not model, it is refused too and
recorded: the emulator must never quietly accept a request it cannot answer as Exchange would.

Simplifications (Exchange's schema is context-sensitive; this table is by element name): an
element has one content model wherever it appears, and only ``t:Message``'s children are checked
for order (the sequence of ItemType then MessageType in types.xsd).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lab.ews.soap import q, schema_error, short

Spec = tuple[frozenset[str], frozenset[str]]  # (attributes, child elements as "t:Name")


def _spec(attrs: str = "", children: str = "") -> Spec:
    return frozenset(attrs.split()), frozenset(children.split())


_FIELD = "t:FieldURI t:ExtendedFieldURI t:IndexedFieldURI"
_FOLDER_IDS = "t:FolderId t:DistinguishedFolderId"
_SEARCH = (
    "t:IsEqualTo t:IsNotEqualTo t:IsGreaterThan t:IsGreaterThanOrEqualTo t:IsLessThan "
    "t:IsLessThanOrEqualTo t:And t:Or t:Not t:Exists t:Contains"
)
_TEXT = _spec()

#: t:Message's children in schema order: ItemType's sequence, then MessageType's (types.xsd).
MESSAGE_ORDER = (
    "MimeContent ItemId ParentFolderId ItemClass Subject Sensitivity Body Attachments "
    "DateTimeReceived Size Categories Importance InReplyTo IsSubmitted IsDraft IsFromMe IsResend "
    "IsUnmodified InternetMessageHeaders DateTimeSent DateTimeCreated ResponseObjects ReminderDueBy "
    "ReminderIsSet ReminderNextTime ReminderMinutesBeforeStart DisplayCc DisplayTo HasAttachments "
    "ExtendedProperty Culture EffectiveRights LastModifiedName LastModifiedTime IsAssociated "
    "WebClientReadFormQueryString WebClientEditFormQueryString ConversationId UniqueBody Flag "
    "StoreEntryId InstanceKey NormalizedBody EntityExtractionResult PolicyTag ArchiveTag "
    "RetentionDate Preview RightsManagementLicenseData PredictedActionReasons IsClutter TextBody "
    "IconIndex SearchKey SortKey Hashtags Mentions MentionedMe MentionsPreview MentionsEx "
    "AppliedHashtags AppliedHashtagsPreview Likes LikesPreview PendingSocialActivityTagIds "
    "AtAllMention CanDelete InferenceClassification "
    "Sender ToRecipients CcRecipients BccRecipients IsReadReceiptRequested "
    "IsDeliveryReceiptRequested ConversationIndex ConversationTopic From InternetMessageId IsRead "
    "IsResponseRequested References ReplyTo ReceivedBy ReceivedRepresenting"
).split()

#: Of t:Message's children, the ones a request may carry here (the rest are refused as unmodelled).
_MESSAGE_CHILDREN = (
    "t:MimeContent t:ItemClass t:Subject t:Sensitivity t:Body t:Categories t:Importance "
    "t:InReplyTo t:ReminderIsSet t:ReminderMinutesBeforeStart t:ExtendedProperty t:Flag t:Sender t:ToRecipients t:CcRecipients t:BccRecipients "
    "t:IsReadReceiptRequested t:IsDeliveryReceiptRequested t:From t:InternetMessageId t:IsRead "
    "t:References t:ReplyTo t:IsResponseRequested"
)

SCHEMA: dict[str, Spec] = {
    # SOAP envelope and header
    "s:Envelope": _spec("", "s:Header s:Body"),
    "s:Header": _spec(
        "",
        "t:RequestServerVersion t:ExchangeImpersonation t:TimeZoneContext t:MailboxCulture t:DateTimePrecision",
    ),
    "t:RequestServerVersion": _spec("Version"),
    "t:ExchangeImpersonation": _spec("", "t:ConnectingSID"),
    "t:ConnectingSID": _spec("", "t:PrimarySmtpAddress t:SmtpAddress t:PrincipalName"),
    "t:PrimarySmtpAddress": _TEXT,
    "t:SmtpAddress": _TEXT,
    "t:PrincipalName": _TEXT,
    "t:TimeZoneContext": _spec("", "t:TimeZoneDefinition"),
    "t:TimeZoneDefinition": _spec("Id Name"),
    "t:MailboxCulture": _TEXT,
    "t:DateTimePrecision": _TEXT,
    "s:Body": _spec(
        "",
        "m:GetFolder m:FindFolder m:CreateFolder m:CreateItem m:FindItem m:GetItem m:UpdateItem "
        "m:GetMailTips m:ResolveNames m:ConvertId m:GetAttachment",
    ),
    # shapes and property paths
    "m:FolderShape": _spec("", "t:BaseShape t:AdditionalProperties"),
    "m:ItemShape": _spec(
        "",
        "t:BaseShape t:IncludeMimeContent t:BodyType t:FilterHtmlContent t:ConvertHtmlCodePageToUTF8 "
        "t:AdditionalProperties",
    ),
    "m:AttachmentShape": _spec(
        "", "t:IncludeMimeContent t:BodyType t:FilterHtmlContent t:AdditionalProperties"
    ),
    "t:BaseShape": _TEXT,
    "t:IncludeMimeContent": _TEXT,
    "t:BodyType": _TEXT,
    "t:FilterHtmlContent": _TEXT,
    "t:ConvertHtmlCodePageToUTF8": _TEXT,
    "t:AdditionalProperties": _spec("", _FIELD),
    "t:FieldURI": _spec("FieldURI"),
    "t:IndexedFieldURI": _spec("FieldURI FieldIndex"),
    "t:ExtendedFieldURI": _spec(
        "DistinguishedPropertySetId PropertySetId PropertyTag PropertyName PropertyId PropertyType"
    ),
    # folder ids
    "m:FolderIds": _spec("", _FOLDER_IDS),
    "m:ParentFolderIds": _spec("", _FOLDER_IDS),
    "m:ParentFolderId": _spec("", _FOLDER_IDS),
    "m:SavedItemFolderId": _spec("", _FOLDER_IDS),
    "t:FolderId": _spec("Id ChangeKey"),
    "t:DistinguishedFolderId": _spec("Id ChangeKey", "t:Mailbox"),
    "t:Mailbox": _spec("", "t:Name t:EmailAddress t:RoutingType t:MailboxType"),
    "t:Name": _TEXT,
    "t:EmailAddress": _TEXT,
    "t:RoutingType": _TEXT,
    "t:MailboxType": _TEXT,
    # operations
    "m:GetFolder": _spec("", "m:FolderShape m:FolderIds"),
    "m:FindFolder": _spec(
        "Traversal", "m:FolderShape m:IndexedPageFolderView m:Restriction m:ParentFolderIds"
    ),
    "m:IndexedPageFolderView": _spec("MaxEntriesReturned Offset BasePoint"),
    "m:CreateFolder": _spec("", "m:ParentFolderId m:Folders"),
    "m:Folders": _spec("", "t:Folder"),
    "t:Folder": _spec("", "t:FolderClass t:DisplayName t:ExtendedProperty"),
    "t:FolderClass": _TEXT,
    "t:DisplayName": _TEXT,
    "m:CreateItem": _spec("MessageDisposition SendMeetingInvitations", "m:SavedItemFolderId m:Items"),
    "m:Items": _spec("", "t:Message"),
    "t:Message": _spec("", _MESSAGE_CHILDREN),
    "t:MimeContent": _spec("CharacterSet"),
    "t:ItemClass": _TEXT,
    "t:Subject": _TEXT,
    "t:Sensitivity": _TEXT,
    "t:Body": _spec("BodyType"),
    "t:Categories": _spec("", "t:String"),
    "t:String": _TEXT,
    "t:Importance": _TEXT,
    "t:InReplyTo": _TEXT,
    "t:ExtendedProperty": _spec("", "t:ExtendedFieldURI t:Value t:Values"),
    "t:Value": _TEXT,
    "t:Values": _spec("", "t:Value"),
    "t:Flag": _spec("", "t:FlagStatus t:StartDate t:DueDate t:CompleteDate"),
    "t:FlagStatus": _TEXT,
    "t:StartDate": _TEXT,
    "t:DueDate": _TEXT,
    "t:CompleteDate": _TEXT,
    "t:Sender": _spec("", "t:Mailbox"),
    "t:From": _spec("", "t:Mailbox"),
    "t:ReplyTo": _spec("", "t:Mailbox"),
    "t:ToRecipients": _spec("", "t:Mailbox"),
    "t:CcRecipients": _spec("", "t:Mailbox"),
    "t:BccRecipients": _spec("", "t:Mailbox"),
    "t:IsReadReceiptRequested": _TEXT,
    "t:IsDeliveryReceiptRequested": _TEXT,
    "t:InternetMessageId": _TEXT,
    "t:IsRead": _TEXT,
    "t:IsResponseRequested": _TEXT,
    "t:ReminderIsSet": _TEXT,
    "t:ReminderMinutesBeforeStart": _TEXT,
    "t:References": _TEXT,
    "m:FindItem": _spec(
        "Traversal", "m:ItemShape m:IndexedPageItemView m:Restriction m:SortOrder m:ParentFolderIds"
    ),
    "m:IndexedPageItemView": _spec("MaxEntriesReturned Offset BasePoint"),
    "m:Restriction": _spec("", _SEARCH),
    "t:And": _spec("", _SEARCH),
    "t:Or": _spec("", _SEARCH),
    "t:Not": _spec("", _SEARCH),
    "t:IsEqualTo": _spec("", f"{_FIELD} t:FieldURIOrConstant"),
    "t:IsNotEqualTo": _spec("", f"{_FIELD} t:FieldURIOrConstant"),
    "t:IsGreaterThan": _spec("", f"{_FIELD} t:FieldURIOrConstant"),
    "t:IsGreaterThanOrEqualTo": _spec("", f"{_FIELD} t:FieldURIOrConstant"),
    "t:IsLessThan": _spec("", f"{_FIELD} t:FieldURIOrConstant"),
    "t:IsLessThanOrEqualTo": _spec("", f"{_FIELD} t:FieldURIOrConstant"),
    "t:Exists": _spec("", _FIELD),
    "t:Contains": _spec("ContainmentMode ContainmentComparison", f"{_FIELD} t:Constant"),
    "t:FieldURIOrConstant": _spec("", f"{_FIELD} t:Constant"),
    "t:Constant": _spec("Value"),
    "m:SortOrder": _spec("", "t:FieldOrder"),
    "t:FieldOrder": _spec("Order", _FIELD),
    "m:GetItem": _spec("", "m:ItemShape m:ItemIds"),
    "m:ItemIds": _spec("", "t:ItemId"),
    "t:ItemId": _spec("Id ChangeKey"),
    "m:UpdateItem": _spec(
        "ConflictResolution MessageDisposition SendMeetingInvitationsOrCancellations SuppressReadReceipts",
        "m:SavedItemFolderId m:ItemChanges",
    ),
    "m:ItemChanges": _spec("", "t:ItemChange"),
    "t:ItemChange": _spec("", "t:ItemId t:Updates"),
    "t:Updates": _spec("", "t:SetItemField t:DeleteItemField"),
    "t:SetItemField": _spec("", f"{_FIELD} t:Message"),
    "t:DeleteItemField": _spec("", _FIELD),
    "m:GetMailTips": _spec("", "m:SendingAs m:Recipients m:MailTipsRequested"),
    "m:SendingAs": _spec("", "t:Name t:EmailAddress t:RoutingType t:MailboxType"),
    "m:Recipients": _spec("", "t:Mailbox"),
    "m:MailTipsRequested": _TEXT,
    "m:ResolveNames": _spec(
        "ReturnFullContactData SearchScope ContactDataShape", "m:ParentFolderIds m:UnresolvedEntry"
    ),
    "m:UnresolvedEntry": _TEXT,
    "m:ConvertId": _spec("DestinationFormat", "m:SourceIds"),
    "m:SourceIds": _spec("", "t:AlternateId"),
    "t:AlternateId": _spec("Format Id Mailbox IsArchive"),
    "m:GetAttachment": _spec("", "m:AttachmentShape m:AttachmentIds"),
    "m:AttachmentIds": _spec("", "t:AttachmentId"),
    "t:AttachmentId": _spec("Id RootItemId RootItemChangeKey"),
}


def validate(node: ET.Element, parent: str = "") -> None:
    """Refuse (ErrorSchemaValidation) any element or attribute the table does not declare."""
    name = short(node.tag)
    spec = SCHEMA.get(name)
    if spec is None or (parent and name not in SCHEMA[parent][1]):
        raise schema_error(
            f"The element '{short(parent) or 'document'}' has invalid child element '{name}'."
            if parent
            else f"The root element '{name}' is not declared."
        )
    attrs, children = spec
    for attribute in node.attrib:
        if attribute not in attrs and not attribute.startswith("{http://www.w3.org/2001/XMLSchema-instance}"):
            raise schema_error(f"The '{attribute}' attribute is not declared on '{name}'.")
    if not children and len(node):
        raise schema_error(f"The element '{name}' cannot contain child element '{short(node[0].tag)}'.")
    if children and (node.text or "").strip():
        raise schema_error(f"The element '{name}' cannot contain text.")
    if name == "t:Message":
        _check_order(node)
    for child in node:
        validate(child, name)


def _check_order(message: ET.Element) -> None:
    last = -1
    for child in message:
        local = short(child.tag).partition(":")[2]
        if local not in MESSAGE_ORDER:
            continue  # refused as undeclared when the children are validated
        position = MESSAGE_ORDER.index(local)
        if position < last:
            raise schema_error(
                f"The element 'Message' in namespace '{q('t:Message')[1:].partition('}')[0]}' has invalid "
                f"child element '{local}': elements must follow the schema's order."
            )
        last = position
