# ruff: noqa: S314 - parses the emulator's answers and Microsoft's stored examples, both local
"""The EWS emulator (lab.ews) against what Microsoft publishes, and the Exchange behaviours it models.

Two kinds of test: the request and response examples of each operation's documentation page
(tests/ews_examples/, stored unchanged, each with its page URL) are replayed, and each Exchange
behaviour a migration meets is exercised over real HTTPS on loopback. exchangelib itself then
drives the emulator for a smoke test.
"""

from __future__ import annotations

import base64
import datetime
import email
import email.policy
import re
import threading
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from lab.ews import EwsConfig, EwsEmulator, Mailbox

EXAMPLES = Path(__file__).parent / "ews_examples"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
NOW = datetime.datetime(2026, 12, 6, 9, 30, tzinfo=datetime.UTC)
SVC, SVC_PASSWORD = "svc-migrate@corp.example", "s3cret-for-tests"
KEY_SET = "0f3f8d1e-5a4b-4c2e-9d7a-2b6c1e8f4a90"


def lab_config(**overrides: object) -> EwsConfig:
    settings: dict[str, object] = {
        "accounts": {SVC: SVC_PASSWORD, "user1@contoso.com": "user1-pw"},
        "impersonation": {
            SVC: frozenset(
                {"ann@corp.example", "full@corp.example", "small@corp.example", "user1@contoso.com"}
            )
        },
        "mailboxes": {
            "ann@corp.example": Mailbox(display_name="Ann Example"),
            "bob@corp.example": Mailbox(),
            "full@corp.example": Mailbox(quota_bytes=3_000),
            "small@corp.example": Mailbox(max_message_size=1_000),
            "user1@contoso.com": Mailbox(display_name="User1"),
            "user2@contoso.com": Mailbox(display_name="User2"),
            "username@domain.contoso.com": Mailbox(display_name="UserDisplayName"),
        },
    }
    settings.update(overrides)
    return EwsConfig(**settings)  # type: ignore[arg-type]


@pytest.fixture
def emulator() -> Iterator[EwsEmulator]:
    with EwsEmulator(lab_config(), now=lambda: NOW) as running:
        yield running


def post(
    emulator: EwsEmulator,
    body: bytes,
    *,
    user: str = SVC,
    password: str = SVC_PASSWORD,
    url: str | None = None,
) -> requests.Response:
    return requests.post(
        url or emulator.url,
        data=body,
        auth=(user, password),
        headers={"Content-Type": "text/xml; charset=utf-8"},
        verify=str(emulator.ca_file),
        timeout=30,
    )


def soap(
    operation: str, *, impersonate: str | None = "ann@corp.example", version: str = "Exchange2016"
) -> bytes:
    header = f'<t:RequestServerVersion Version="{version}"/>'
    if impersonate:
        header += (
            "<t:ExchangeImpersonation><t:ConnectingSID>"
            f"<t:PrimarySmtpAddress>{impersonate}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
        )
    return (
        f'<?xml version="1.0" encoding="utf-8"?><s:Envelope xmlns:s="{SOAP}" xmlns:m="{M}" xmlns:t="{T}">'
        f"<s:Header>{header}</s:Header><s:Body>{operation}</s:Body></s:Envelope>"
    ).encode()


def local(tag: str) -> str:
    return tag.rpartition("}")[2]


def messages(answer: requests.Response) -> list[ET.Element]:
    root = ET.fromstring(answer.content)
    found = root.find(f"{{{SOAP}}}Body")
    assert found is not None
    return [m for m in found.iter() if local(m.tag).endswith("ResponseMessage")]


def codes(answer: requests.Response) -> list[str]:
    return [m.findtext(f"{{{M}}}ResponseCode") or "" for m in messages(answer)]


def fault_code(answer: requests.Response) -> str:
    root = ET.fromstring(answer.content)
    return (
        root.findtext(".//detail/{http://schemas.microsoft.com/exchange/services/2006/errors}ResponseCode")
        or ""
    )


def mime_message(subject: str = "Quarterly numbers", attachment: bytes | None = b"%PDF-1.4 tiny\n") -> bytes:
    message = email.message.EmailMessage(policy=email.policy.SMTP)
    message["From"] = "Carol <carol@old.example>"
    message["To"] = "ann@corp.example"
    message["Cc"] = "dave@old.example"
    message["Subject"] = subject
    message["Date"] = "Tue, 02 Jan 2024 08:15:00 +0100"
    message["Message-ID"] = "<q4-numbers@old.example>"
    message["In-Reply-To"] = "<earlier@old.example>"
    message["References"] = "<earlier@old.example>"
    message["X-Mailer"] = "Old Mailer 1.0"
    message.set_content("Numbers attached.\nSee you.\n", cte="8bit")
    if attachment is not None:
        message.add_attachment(attachment, maintype="application", subtype="pdf", filename="q4.pdf")
    return message.as_bytes()


def create_item(
    mime: bytes, *, props: str = "", folder: str = "inbox", extra: str = "", disposition: str = "SaveOnly"
) -> str:
    return (
        f'<m:CreateItem MessageDisposition="{disposition}"><m:SavedItemFolderId>'
        f'<t:DistinguishedFolderId Id="{folder}"/></m:SavedItemFolderId><m:Items><t:Message>'
        f'<t:MimeContent CharacterSet="UTF-8">{base64.b64encode(mime).decode()}</t:MimeContent>'
        f"{extra}{props}</t:Message></m:Items></m:CreateItem>"
    )


def prop(tag: int, kind: str, value: str) -> str:
    return (
        f'<t:ExtendedProperty><t:ExtendedFieldURI PropertyTag="0x{tag:04X}" PropertyType="{kind}"/>'
        f"<t:Value>{value}</t:Value></t:ExtendedProperty>"
    )


def key_prop(value: str) -> str:
    return (
        f'<t:ExtendedProperty><t:ExtendedFieldURI PropertySetId="{KEY_SET}" PropertyName="CutoverKey" '
        f'PropertyType="String"/><t:Value>{value}</t:Value></t:ExtendedProperty>'
    )


# --- Microsoft's published examples -----------------------------------------------------------

#: The shape an answer must share with the published one: these elements, wherever the published
#: answer has them (paths of local names from the Body down).
STRUCTURE = frozenset(
    "ResponseMessages ResponseCode MessageText Folders Folder FolderId DisplayName RootFolder Items "
    "Message ItemId ResolutionSet Resolution Mailbox EmailAddress MailTips RecipientAddress MailboxFull "
    "MaxMessageSize AlternateId Attachments FileAttachment AttachmentId Content Response UserResponses "
    "UserResponse UserSettings UserSetting Name Value ErrorCode".split()
)


def shape(root: ET.Element) -> set[str]:
    body = next(e for e in root.iter() if local(e.tag) == "Body")
    paths: set[str] = set()

    def walk(node: ET.Element, prefix: str) -> None:
        for child in node:
            name = local(child.tag)
            if name in STRUCTURE or name.endswith("Response") or name.endswith("ResponseMessage"):
                path = f"{prefix}/{name}"
                paths.add(path)
                walk(child, path)

    walk(body, "")
    return paths


def published(name: str) -> bytes:
    return (EXAMPLES / name).read_bytes()


def with_attribute(request: bytes, old: str, new: str) -> bytes:
    assert old.encode() in request
    return request.replace(old.encode(), new.encode())


def test_every_stored_example_names_its_page() -> None:
    files = sorted(EXAMPLES.glob("*.xml"))
    assert len(files) >= 30
    for path in files:
        assert re.search(
            rb"<!-- Published example \d+ of https://learn\.microsoft\.com/\S+", path.read_bytes()
        )


@pytest.mark.parametrize(
    ("request_file", "response_file"),
    [
        ("getfolder-operation.1.request.xml", "getfolder-operation.2.response.xml"),
        ("findfolder-operation.1.request.xml", "findfolder-operation.2.response.xml"),
        ("createfolder-operation.1.request.xml", "createfolder-operation.2.response.xml"),
        ("finditem-operation.1.request.xml", "finditem-operation.2.response.xml"),
        ("getmailtips-operation.1.request.xml", "getmailtips-operation.2.response.xml"),
    ],
)
def test_published_request_is_accepted_and_answered_in_the_published_shape(
    emulator: EwsEmulator, request_file: str, response_file: str
) -> None:
    if request_file.startswith("findfolder"):
        post(
            emulator,
            published("createfolder-operation.1.request.xml").replace(b"msgfolderroot", b"inbox"),
            user="user1@contoso.com",
            password="user1-pw",
        )
    if request_file.startswith("finditem"):
        post(
            emulator,
            soap(create_item(mime_message(), folder="deleteditems"), impersonate="user1@contoso.com"),
        )
    answer = post(emulator, published(request_file), user="user1@contoso.com", password="user1-pw")
    assert answer.status_code == 200, answer.text
    expected = ET.fromstring(published(response_file))
    assert shape(expected) <= shape(ET.fromstring(answer.content))
    assert emulator.unknown_requests == []


def test_published_createitem_example_sends_mail_which_is_refused_and_recorded(emulator: EwsEmulator) -> None:
    """The page's example sends the message (SendAndSaveCopy): sending is not modelled, so it is a
    fault and recorded; saved instead (SaveOnly), the same request is answered as published."""
    request = published("createitem-operation-email-message.1.request.xml")
    refused = post(emulator, request, user="user1@contoso.com", password="user1-pw")
    assert refused.status_code == 500
    assert fault_code(refused) == "ErrorInvalidRequest"
    assert emulator.unknown_requests == [
        "CreateItem: The EWS emulator does not model sending mail (MessageDisposition=SendAndSaveCopy)."
    ]
    saved = post(
        emulator,
        with_attribute(request, "SendAndSaveCopy", "SaveOnly"),
        user="user1@contoso.com",
        password="user1-pw",
    )
    assert saved.status_code == 200
    expected = ET.fromstring(published("createitem-operation-email-message.2.response.xml"))
    assert shape(expected) <= shape(ET.fromstring(saved.content))
    (item,) = emulator.items("user1@contoso.com", "drafts")
    assert (item.subject, item.header("To"), item.is_read) == (
        "Project Action",
        "sschmidt@example.com",
        False,
    )


@pytest.mark.parametrize(
    ("request_file", "error_file", "code"),
    [
        (
            "getitem-operation-email-message.1.request.xml",
            "getitem-operation-email-message.3.response.xml",
            "ErrorInvalidIdMalformed",
        ),
        (
            "convertid-operation.1.request.xml",
            "convertid-operation.3.response.xml",
            "ErrorInvalidIdMalformed",
        ),
        ("getattachment-operation.1.request.xml", None, "ErrorInvalidIdMalformed"),
    ],
)
def test_published_request_with_a_placeholder_id_gets_the_published_error_shape(
    emulator: EwsEmulator, request_file: str, error_file: str | None, code: str
) -> None:
    """The pages' ids ("AAAlAF") are placeholders: the emulator answers them as Exchange answers an
    id it never issued, per item, in the shape of the page's error example."""
    answer = post(emulator, published(request_file), user="user1@contoso.com", password="user1-pw")
    assert answer.status_code == 200
    assert codes(answer) == [code]
    if error_file is not None:
        error = ET.fromstring(published(error_file))
        assert {p for p in shape(error) if "ResponseMessage" in p} <= shape(ET.fromstring(answer.content))
    assert emulator.unknown_requests == []


def test_published_getitem_example_with_a_real_id_returns_rendered_mime(emulator: EwsEmulator) -> None:
    created = post(emulator, soap(create_item(mime_message()), impersonate="user1@contoso.com"))
    (item,) = emulator.items("user1@contoso.com")
    request = re.sub(
        rb'<t:ItemId Id="[^"]*" ChangeKey="[^"]*" />',
        f'<t:ItemId Id="{item.item_id}"/>'.encode(),
        published("getitem-operation-email-message.1.request.xml"),
    )
    answer = post(emulator, request, user="user1@contoso.com", password="user1-pw")
    assert created.status_code == answer.status_code == 200
    message = ET.fromstring(answer.content).find(f".//{{{T}}}Message")
    assert message is not None
    assert [local(c.tag) for c in message][:2] == ["MimeContent", "ItemId"]
    # The page's own success example is not well-formed XML (a closing tag is wrong), so its shape
    # is checked by hand above rather than compared.
    with pytest.raises(ET.ParseError):
        ET.fromstring(published("getitem-operation-email-message.2.response.xml"))


def test_published_getattachment_example_with_a_real_id_returns_the_bytes(emulator: EwsEmulator) -> None:
    post(emulator, soap(create_item(mime_message()), impersonate="user1@contoso.com"))
    (item,) = emulator.items("user1@contoso.com")
    request = re.sub(
        rb'Id="AAAtAEFkbWluaX\.\.\."',
        f'Id="{item.attachments[0].attachment_id}"'.encode(),
        published("getattachment-operation.1.request.xml"),
    )
    answer = post(emulator, request, user="user1@contoso.com", password="user1-pw")
    expected = ET.fromstring(published("getattachment-operation.2.response.xml"))
    assert shape(expected) <= shape(ET.fromstring(answer.content))
    content = ET.fromstring(answer.content).findtext(f".//{{{T}}}Content") or ""
    assert base64.b64decode(content) == b"%PDF-1.4 tiny\n"


@pytest.mark.parametrize(
    ("request_file", "why"),
    [
        ("resolvenames-operation.1.request.xml", "ResolveNames with full contact data"),
        ("updateitem-operation.1.request.xml", "UpdateItem on item:Sensitivity"),
        ("updateitem-operation.2.request.xml", "AppendToItemField"),
        ("updateitem-operation.3.request.xml", "UpdateItem on item:Body"),
    ],
)
def test_published_request_the_emulator_does_not_model_is_refused_and_recorded(
    emulator: EwsEmulator, request_file: str, why: str
) -> None:
    """Exchange would accept these; the emulator does not model them, so it refuses them loudly
    rather than answer as if it did."""
    post(emulator, soap(create_item(mime_message()), impersonate="user1@contoso.com"))
    (item,) = emulator.items("user1@contoso.com")
    request = re.sub(
        rb'<t:ItemId Id="[^"]*" ChangeKey="[^"]*"/>',
        f'<t:ItemId Id="{item.item_id}"/>'.encode(),
        published(request_file),
    )
    answer = post(emulator, request, user="user1@contoso.com", password="user1-pw")
    assert answer.status_code == 500
    assert fault_code(answer) in ("ErrorInvalidRequest", "ErrorSchemaValidation")
    assert len(emulator.unknown_requests) == 1
    assert why in emulator.unknown_requests[0]


def test_published_resolvenames_example_without_contact_data_resolves(emulator: EwsEmulator) -> None:
    request = with_attribute(
        published("resolvenames-operation.1.request.xml"),
        'ReturnFullContactData="true"',
        'ReturnFullContactData="false"',
    )
    answer = post(emulator, request, user="user1@contoso.com", password="user1-pw")
    assert codes(answer) == ["NoError"]
    expected = ET.fromstring(published("resolvenames-operation.2.response.xml"))
    assert {p for p in shape(expected) if "Contact" not in p} <= shape(ET.fromstring(answer.content))


def test_published_autodiscover_examples(emulator: EwsEmulator) -> None:
    soap_request = published("getusersettings-operation-soap.1.request.xml")
    # The page spells the Autodiscover namespace "https://…"; Exchange's WSDL and clients use
    # "http://" (the POX page too). As published, the request is refused (and recorded); corrected, it is answered.
    refused = post(emulator, soap_request, url=emulator.autodiscover_url)
    assert refused.status_code == 500
    assert emulator.unknown_requests == ["Autodiscover: not a GetUserSettings request"]
    corrected = soap_request.replace(
        b"https://schemas.microsoft.com/exchange/2010", b"http://schemas.microsoft.com/exchange/2010"
    )
    answer = post(emulator, corrected, url=emulator.autodiscover_url)
    assert answer.status_code == 200
    expected = ET.fromstring(published("getusersettings-operation-soap.2.response.xml"))
    assert shape(expected) <= shape(ET.fromstring(answer.content))
    pox_request = (
        published("pox-autodiscover-request-for-exchange.1.request.xml")
        .replace(b"user@contoso.com", b"ann@corp.example")
        .replace(b"https://schemas", b"http://schemas")
    )
    pox = post(emulator, pox_request, url=emulator.autodiscover_url.replace(".svc", ".xml"))
    assert pox.status_code == 200
    assert f"<EwsUrl>{emulator.url}</EwsUrl>".encode() in pox.content


# --- Exchange behaviours ----------------------------------------------------------------------


def test_mime_import_without_message_flags_is_a_draft_with_the_import_time(emulator: EwsEmulator) -> None:
    answer = post(emulator, soap(create_item(mime_message())))
    assert codes(answer) == ["NoError"]
    (item,) = emulator.items("ann@corp.example")
    assert item.is_draft and item.received == NOW
    assert item.sent == datetime.datetime(2024, 1, 2, 7, 15, tzinfo=datetime.UTC)  # from Date


def test_message_flags_and_times_set_at_creation_are_kept(emulator: EwsEmulator) -> None:
    props = (
        prop(0x0E06, "SystemTime", "2024-01-02T07:16:00Z")
        + prop(0x0039, "SystemTime", "2024-01-02T07:15:00Z")
        + key_prop("k-1")
        + prop(0x0E07, "Integer", "1")
        + prop(0x1090, "Integer", "2")
        + prop(0x1081, "Integer", "102")
    )
    extra = "<t:Categories><t:String>Finance</t:String></t:Categories>"
    answer = post(emulator, soap(create_item(mime_message(), props=props, extra=extra)))
    assert codes(answer) == ["NoError"]
    (item,) = emulator.items("ann@corp.example")
    assert (item.is_draft, item.is_read, item.flag_status, item.last_verb) == (False, True, 2, 102)
    assert item.received == datetime.datetime(2024, 1, 2, 7, 16, tzinfo=datetime.UTC)
    assert item.categories == ["Finance"] and item.named(KEY_SET, "CutoverKey") == "k-1"
    # IsRead comes after ExtendedProperty in the schema's order and wins over 0x0E07's read bit.
    post(
        emulator,
        soap(
            create_item(mime_message("b"), props=prop(0x0E07, "Integer", "1"), extra="").replace(
                "</t:Message>", "<t:IsRead>false</t:IsRead></t:Message>"
            )
        ),
    )
    assert [i.is_read for i in emulator.items("ann@corp.example") if i.subject == "b"] == [False]


def test_message_flags_can_not_be_changed_after_creation(emulator: EwsEmulator) -> None:
    post(emulator, soap(create_item(mime_message())))
    (item,) = emulator.items("ann@corp.example")
    update = (
        '<m:UpdateItem ConflictResolution="AlwaysOverwrite" MessageDisposition="SaveOnly"><m:ItemChanges>'
        f'<t:ItemChange><t:ItemId Id="{item.item_id}"/><t:Updates><t:SetItemField>'
        '<t:ExtendedFieldURI PropertyTag="0x0E07" PropertyType="Integer"/><t:Message>'
        f"{prop(0x0E07, 'Integer', '1')}</t:Message></t:SetItemField></t:Updates></t:ItemChange>"
        "</m:ItemChanges></m:UpdateItem>"
    )
    assert codes(post(emulator, soap(update))) == ["ErrorInvalidPropertySet"]
    assert item.is_draft


def test_getitem_renders_mime_anew_but_keeps_the_headers_exchange_keeps(emulator: EwsEmulator) -> None:
    sent = mime_message()
    post(emulator, soap(create_item(sent)))
    (item,) = emulator.items("ann@corp.example")
    get = (
        "<m:GetItem><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape><t:IncludeMimeContent>true"
        f'</t:IncludeMimeContent></m:ItemShape><m:ItemIds><t:ItemId Id="{item.item_id}"/></m:ItemIds></m:GetItem>'
    )
    answer = post(emulator, soap(get))
    rendered = base64.b64decode(ET.fromstring(answer.content).findtext(f".//{{{T}}}MimeContent") or "")
    assert rendered != sent
    original = email.message_from_bytes(sent, policy=email.policy.default)
    back = email.message_from_bytes(rendered, policy=email.policy.default)
    for header in ("Message-ID", "From", "To", "Cc", "Subject", "In-Reply-To", "References"):
        assert str(back[header]) == str(original[header]), header
    assert back["X-Mailer"] is None  # not kept
    assert back.get_boundary() != original.get_boundary()
    attachment = next(back.iter_attachments())
    assert attachment.get_content() == b"%PDF-1.4 tiny\n"
    assert attachment["Content-Transfer-Encoding"] == "base64"


def test_finditem_finds_by_key_property_with_paging_and_a_count(emulator: EwsEmulator) -> None:
    batch = "".join(
        f"<t:Message><t:MimeContent>{base64.b64encode(mime_message(f'm{n}', None)).decode()}</t:MimeContent>"
        f"{key_prop(f'key-{n % 3}')}</t:Message>"
        for n in range(7)
    )
    create = (
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="inbox"/>'
        f"</m:SavedItemFolderId><m:Items>{batch}</m:Items></m:CreateItem>"
    )
    assert codes(post(emulator, soap(create))) == ["NoError"] * 7

    def find(offset: int) -> ET.Element:
        body = (
            '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape></m:ItemShape>'
            f'<m:IndexedPageItemView MaxEntriesReturned="1" Offset="{offset}" BasePoint="Beginning"/>'
            '<m:Restriction><t:IsEqualTo><t:ExtendedFieldURI PropertySetId="' + KEY_SET + '" '
            'PropertyName="CutoverKey" PropertyType="String"/><t:FieldURIOrConstant>'
            '<t:Constant Value="KEY-1"/></t:FieldURIOrConstant></t:IsEqualTo></m:Restriction>'
            '<m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds></m:FindItem>'
        )
        root = ET.fromstring(post(emulator, soap(body)).content).find(f".//{{{M}}}RootFolder")
        assert root is not None
        return root

    # key-1 is on messages 1 and 4; the constant's letter case does not matter
    first, second = find(0), find(1)
    assert (first.get("TotalItemsInView"), first.get("IncludesLastItemInRange")) == ("2", "false")
    assert (second.get("IncludesLastItemInRange"), second.get("IndexedPagingOffset")) == ("true", "2")
    found = {e.get("Id") for page in (first, second) for e in page.iter(f"{{{T}}}ItemId")}
    assert found == {i.item_id for i in emulator.items("ann@corp.example") if i.subject in ("m1", "m4")}


def test_request_over_the_limit_is_refused_with_413_before_authentication() -> None:
    with EwsEmulator(lab_config(request_limit=10_000)) as small:
        answer = post(small, soap(create_item(mime_message() + b"x" * 20_000)), password="wrong")
        assert answer.status_code == 413
        assert small.items("ann@corp.example") == []


def test_bad_credentials_get_401_with_the_schemes_offered(emulator: EwsEmulator) -> None:
    answer = post(emulator, soap(create_item(mime_message())), password="wrong")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"].startswith("Basic")


def test_impersonation_is_checked_against_the_accounts_scope(emulator: EwsEmulator) -> None:
    denied = post(emulator, soap(create_item(mime_message()), impersonate="bob@corp.example"))
    assert (denied.status_code, fault_code(denied)) == (500, "ErrorImpersonateUserDenied")
    missing = post(emulator, soap(create_item(mime_message()), impersonate="nobody@corp.example"))
    assert (missing.status_code, fault_code(missing)) == (500, "ErrorNonExistentMailbox")
    assert emulator.items("bob@corp.example") == []


def test_size_and_quota_refusals_are_per_item(emulator: EwsEmulator) -> None:
    big = mime_message(attachment=b"x" * 1_500)
    answer = post(emulator, soap(create_item(big), impersonate="small@corp.example"))
    assert codes(answer) == ["ErrorMessageSizeExceeded"]
    first = post(emulator, soap(create_item(big), impersonate="full@corp.example"))
    second = post(emulator, soap(create_item(big), impersonate="full@corp.example"))
    assert (codes(first), codes(second)) == (["NoError"], ["ErrorQuotaExceeded"])


def test_mail_tips_tell_the_size_limit_and_whether_the_mailbox_is_full(emulator: EwsEmulator) -> None:
    post(emulator, soap(create_item(mime_message(attachment=b"x" * 1_500)), impersonate="full@corp.example"))
    tips = (
        "<m:GetMailTips><m:SendingAs><t:EmailAddress>svc-migrate@corp.example</t:EmailAddress></m:SendingAs>"
        "<m:Recipients><t:Mailbox><t:EmailAddress>small@corp.example</t:EmailAddress></t:Mailbox>"
        "<t:Mailbox><t:EmailAddress>full@corp.example</t:EmailAddress></t:Mailbox></m:Recipients>"
        "<m:MailTipsRequested>MaxMessageSize MailboxFullStatus</m:MailTipsRequested></m:GetMailTips>"
    )
    root = ET.fromstring(post(emulator, soap(tips, impersonate=None)).content)
    assert [e.text for e in root.iter(f"{{{T}}}MaxMessageSize")] == ["1000", "10485760"]
    assert [e.text for e in root.iter(f"{{{T}}}MailboxFull")] == ["false", "false"]


def test_folder_names_collide_case_insensitively(emulator: EwsEmulator) -> None:
    def create(name: str) -> list[str]:
        body = (
            '<m:CreateFolder><m:ParentFolderId><t:DistinguishedFolderId Id="msgfolderroot"/></m:ParentFolderId>'
            f"<m:Folders><t:Folder><t:DisplayName>{name}</t:DisplayName></t:Folder></m:Folders></m:CreateFolder>"
        )
        return codes(post(emulator, soap(body)))

    assert create("Projects") == ["NoError"]
    assert create("PROJECTS") == ["ErrorFolderExists"]
    assert create("inbox") == ["ErrorFolderExists"]
    assert "Projects" in emulator.folder_names("ann@corp.example")


def test_unknown_element_attribute_or_operation_is_a_schema_fault_and_recorded(emulator: EwsEmulator) -> None:
    unknown_element = create_item(mime_message()).replace(
        "</t:Message>", "<t:Colour>red</t:Colour></t:Message>"
    )
    unknown_attribute = create_item(mime_message()).replace("<t:Message>", '<t:Message Kind="x">')
    out_of_order = create_item(mime_message(), extra="<t:IsRead>true</t:IsRead>", props=key_prop("k"))
    for body in (unknown_element, unknown_attribute, out_of_order, "<m:MakeCoffee/>"):
        answer = post(emulator, soap(body))
        assert (answer.status_code, fault_code(answer)) == (500, "ErrorSchemaValidation")
    assert len(emulator.unknown_requests) == 4
    assert emulator.items("ann@corp.example") == []


def test_unknown_field_uri_is_a_schema_fault_and_recorded(emulator: EwsEmulator) -> None:
    """A FieldURI outside the schema fails validation, on a folder as on an item, and is recorded."""
    colour = '<t:AdditionalProperties><t:FieldURI FieldURI="{}:Colour"/></t:AdditionalProperties>'
    get_folder = (
        "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape>"
        + colour.format("folder")
        + '</m:FolderShape><m:FolderIds><t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>'
    )
    find_item = (
        '<m:FindItem Traversal="Shallow"><m:ItemShape><t:BaseShape>IdOnly</t:BaseShape>'
        + colour.format("item")
        + '</m:ItemShape><m:ParentFolderIds><t:DistinguishedFolderId Id="inbox"/></m:ParentFolderIds>'
        "</m:FindItem>"
    )
    for body in (get_folder, find_item):
        answer = post(emulator, soap(body))
        assert (answer.status_code, fault_code(answer)) == (500, "ErrorSchemaValidation")
    assert len(emulator.unknown_requests) == 2
    assert all("Colour" in seen for seen in emulator.unknown_requests)


def test_server_busy_storm_carries_back_off_milliseconds(emulator: EwsEmulator) -> None:
    emulator.inject("server_busy", count=2, back_off_ms=1234)
    answers = [post(emulator, soap(create_item(mime_message()))) for _ in range(3)]
    assert [a.status_code for a in answers] == [500, 500, 200]
    detail = ET.fromstring(answers[0].content).find(f".//{{{T}}}Value[@Name='BackOffMilliseconds']")
    assert detail is not None and detail.text == "1234"
    assert len(emulator.items("ann@corp.example")) == 1


def test_concurrency_over_the_limit_answers_server_busy() -> None:
    with EwsEmulator(lab_config(max_concurrency=1, concurrency_back_off_ms=500)) as busy:
        gate = busy.hold("GetFolder")
        held: list[requests.Response] = []
        get_inbox = (
            "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>"
            '<t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>'
        )
        first = threading.Thread(target=lambda: held.append(post(busy, soap(get_inbox))))
        first.start()
        while busy.in_flight(SVC) == 0 and first.is_alive():
            threading.Event().wait(0.01)
        second = post(busy, soap(create_item(mime_message())))
        gate.set()
        first.join(30)
        assert (second.status_code, fault_code(second)) == (500, "ErrorServerBusy")
        values = {v.get("Name"): v.text for v in ET.fromstring(second.content).iter(f"{{{T}}}Value")}
        assert values == {
            "Policy": "MaxConcurrency",
            "MaxConcurrencyLimit": "1",
            "BackOffMilliseconds": "500",
        }
        assert held and held[0].status_code == 200
        assert busy.items("ann@corp.example") == []


def test_dropped_connection_after_createitem_leaves_the_item_created(emulator: EwsEmulator) -> None:
    emulator.inject("drop_after")
    with pytest.raises(requests.ConnectionError):
        post(emulator, soap(create_item(mime_message())))
    assert len(emulator.items("ann@corp.example")) == 1


def test_http_503_does_nothing(emulator: EwsEmulator) -> None:
    emulator.inject("http_503")
    assert post(emulator, soap(create_item(mime_message()))).status_code == 503
    assert emulator.items("ann@corp.example") == []


def test_tamper_changes_what_getitem_returns(emulator: EwsEmulator) -> None:
    post(emulator, soap(create_item(mime_message())))
    (item,) = emulator.items("ann@corp.example")
    emulator.tamper(
        item.item_id, attachment=(0, b"changed"), received=datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    )
    assert item.attachments[0].data == b"changed"
    assert item.received.year == 2020


# --- exchangelib drives it -------------------------------------------------------------------


def exchangelib_trusting(ca_file: Path) -> type:
    """A requests adapter that verifies TLS against the emulator's CA, for exchangelib's
    ``BaseProtocol.HTTP_ADAPTER_CLS`` (exchangelib takes no CA path of its own)."""

    class TrustEmulatorCA(requests.adapters.HTTPAdapter):
        def cert_verify(self, conn: object, url: str, verify: object, cert: object) -> None:
            super().cert_verify(conn, url, str(ca_file), cert)  # type: ignore[arg-type]

    return TrustEmulatorCA


def test_exchangelib_smoke(emulator: EwsEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    from exchangelib import BASIC, IMPERSONATION, Account, Configuration, Credentials, FailFast, Message
    from exchangelib.extended_properties import ExtendedProperty
    from exchangelib.folders import Folder
    from exchangelib.protocol import BaseProtocol, close_connections

    class Key(ExtendedProperty):  # type: ignore[misc]
        property_set_id = KEY_SET
        property_name = "CutoverKey"
        property_type = "String"

    class Flags(ExtendedProperty):  # type: ignore[misc]
        property_tag = 0x0E07
        property_type = "Integer"

    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", exchangelib_trusting(emulator.ca_file))
    Message.register("smoke_key", Key)
    Message.register("smoke_flags", Flags)
    try:
        config = Configuration(
            service_endpoint=emulator.url,
            credentials=Credentials(SVC, SVC_PASSWORD),
            auth_type=BASIC,
            retry_policy=FailFast(),
        )
        account = Account("ann@corp.example", config=config, autodiscover=False, access_type=IMPERSONATION)
        assert account.version.build.major_version == 15
        message = Message(
            account=account,
            folder=account.inbox,
            mime_content=mime_message(),
            smoke_key="k-9",
            smoke_flags=1,
            is_read=True,
            categories=["Finance"],
        )
        (created,) = account.bulk_create(
            folder=account.inbox, items=[message], message_disposition="SaveOnly"
        )
        found = account.inbox.get(smoke_key="k-9")
        assert (found.id, found.is_draft, found.is_read, found.categories) == (
            created.id,
            False,
            True,
            ["Finance"],
        )
        mime = account.inbox.all().only("mime_content").get(smoke_key="k-9").mime_content
        assert b"Message-ID: <q4-numbers@old.example>" in mime
        Folder(parent=account.msg_folder_root, name="Projects").save()
        assert "Projects" in [f.name for f in account.msg_folder_root.children]
        assert emulator.unknown_requests == []
    finally:
        Message.deregister("smoke_key")
        Message.deregister("smoke_flags")
        close_connections()


def test_exchangelib_ntlm_handshake_authenticates_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    from exchangelib import IMPERSONATION, NTLM, Account, Configuration, Credentials, FailFast
    from exchangelib.errors import UnauthorizedError
    from exchangelib.protocol import BaseProtocol, close_connections

    config = lab_config(
        auth_modes=("ntlm",),
        accounts={"CORP\\svc-ntlm": "ntlm-pw"},
        impersonation={"CORP\\svc-ntlm": frozenset({"*"})},
    )
    with EwsEmulator(config) as emulator:
        monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", exchangelib_trusting(emulator.ca_file))
        try:
            for password in ("not-the-password", "ntlm-pw"):
                settings = Configuration(
                    service_endpoint=emulator.url,
                    credentials=Credentials("CORP\\svc-ntlm", password),
                    auth_type=NTLM,
                    retry_policy=FailFast(),
                )
                if password == "ntlm-pw":
                    account = Account(
                        "ann@corp.example", config=settings, autodiscover=False, access_type=IMPERSONATION
                    )
                    assert account.inbox.total_count == 0
                else:
                    refused = Account(
                        "ann@corp.example", config=settings, autodiscover=False, access_type=IMPERSONATION
                    )
                    with pytest.raises(UnauthorizedError):
                        refused.inbox.total_count  # noqa: B018 - the first request authenticates
        finally:
            close_connections()
        # Basic is not offered when only NTLM is configured.
        basic = post(emulator, soap(create_item(mime_message())), user="CORP\\svc-ntlm", password="ntlm-pw")
        assert basic.status_code == 401
        assert basic.headers["WWW-Authenticate"] == "Negotiate, NTLM"  # requests joins repeated headers


def test_exchangelib_account_mail_tips_is_refused_as_exchange_would(
    emulator: EwsEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """exchangelib 5.6's ``Account.mail_tips`` puts "All" as text inside GetMailTips instead of a
    MailTipsRequested element: Exchange's schema validation refuses that, and so does the emulator.
    A client must send GetMailTips itself."""
    from exchangelib import BASIC, IMPERSONATION, Account, Configuration, Credentials, FailFast
    from exchangelib.errors import ErrorSchemaValidation
    from exchangelib.protocol import BaseProtocol, close_connections

    monkeypatch.setattr(BaseProtocol, "HTTP_ADAPTER_CLS", exchangelib_trusting(emulator.ca_file))
    settings = Configuration(
        service_endpoint=emulator.url,
        credentials=Credentials(SVC, SVC_PASSWORD),
        auth_type=BASIC,
        retry_policy=FailFast(),
    )
    try:
        account = Account("ann@corp.example", config=settings, autodiscover=False, access_type=IMPERSONATION)
        with pytest.raises(ErrorSchemaValidation):
            account.mail_tips  # noqa: B018 - the property sends the request
    finally:
        close_connections()
    assert emulator.unknown_requests == ["GetMailTips: The element 'm:GetMailTips' cannot contain text."]


def test_item_error_fails_one_item_and_the_batch_goes_on(emulator: EwsEmulator) -> None:
    emulator.inject("item_error", code="ErrorItemCorrupt")
    batch = "".join(
        f"<t:Message><t:MimeContent>{base64.b64encode(mime_message(f'b{n}', None)).decode()}</t:MimeContent>"
        "</t:Message>"
        for n in range(3)
    )
    create = (
        '<m:CreateItem MessageDisposition="SaveOnly"><m:SavedItemFolderId><t:DistinguishedFolderId Id="inbox"/>'
        f"</m:SavedItemFolderId><m:Items>{batch}</m:Items></m:CreateItem>"
    )
    answer = post(emulator, soap(create))
    assert codes(answer) == ["ErrorItemCorrupt", "NoError", "NoError"]
    assert sorted(i.subject for i in emulator.items("ann@corp.example")) == ["b1", "b2"]


def test_demo_config_serves_the_lab_targets_mailboxes() -> None:
    from lab import data
    from lab.ews.demo import SERVICE_ACCOUNT, demo_config

    lab = data.build()
    config = demo_config(lab)
    assert data.address(data.MISSING_ON_TARGET) not in config.mailboxes
    assert config.may_impersonate(SERVICE_ACCOUNT[0], data.address("alice.adams"))
    with EwsEmulator(config) as demo:
        answer = post(
            demo,
            soap(create_item(mime_message()), impersonate=data.address("alice.adams")),
            user=SERVICE_ACCOUNT[0],
            password=SERVICE_ACCOUNT[1],
        )
        assert codes(answer) == ["NoError"]


def _malformed_folder(request: bytes) -> bytes:
    return re.sub(rb'<t:DistinguishedFolderId Id="[a-z]+"\s*/>', b'<t:FolderId Id="not-an-id"/>', request)


@pytest.mark.parametrize(
    ("error_file", "make_request"),
    [
        (
            "getfolder-operation.3.response.xml",
            lambda: _malformed_folder(published("getfolder-operation.1.request.xml")),
        ),
        (
            "findfolder-operation.3.response.xml",
            lambda: _malformed_folder(published("findfolder-operation.1.request.xml")),
        ),
        (
            "finditem-operation.3.response.xml",
            lambda: _malformed_folder(published("finditem-operation.1.request.xml")),
        ),
        ("createfolder-operation.3.response.xml", lambda: published("createfolder-operation.1.request.xml")),
        ("convertid-operation.3.response.xml", lambda: published("convertid-operation.1.request.xml")),
        (
            "resolvenames-operation.3.response.xml",
            lambda: (
                published("resolvenames-operation.1.request.xml")
                .replace(b'ReturnFullContactData="true"', b'ReturnFullContactData="false"')
                .replace(b"User2", b"nobody-by-that-name")
            ),
        ),
    ],
)
def test_published_error_example_is_answered_with_the_same_code_and_elements(
    emulator: EwsEmulator, error_file: str, make_request: object
) -> None:
    request = make_request()  # type: ignore[operator]
    if error_file.startswith("createfolder"):
        post(emulator, request, user="user1@contoso.com", password="user1-pw")  # the folders now exist
    answer = post(emulator, request, user="user1@contoso.com", password="user1-pw")
    assert answer.status_code == 200
    expected = [
        m for m in ET.fromstring(published(error_file)).iter() if local(m.tag).endswith("ResponseMessage")
    ]
    actual = messages(answer)
    assert [m.get("ResponseClass") for m in actual][: len(expected)] == [
        m.get("ResponseClass") for m in expected
    ]
    for want, got in zip(expected, actual, strict=False):
        assert [local(c.tag) for c in got] == [local(c.tag) for c in want]
        assert got.findtext(f"{{{M}}}ResponseCode") == (
            want.findtext(f"{{{M}}}ResponseCode")
            or want.findtext("{http://schemas.microsoft.com/exchange/services/2006/messages}ResponseCode")
        )
    assert emulator.unknown_requests == []


def test_published_pox_error_example_shape(emulator: EwsEmulator) -> None:
    """The published POX request (its namespace spelled https://) is not a request Exchange knows:
    answered with the page's error example, ErrorCode 600 "Invalid Request"."""
    answer = post(
        emulator,
        published("pox-autodiscover-request-for-exchange.1.request.xml"),
        url=emulator.autodiscover_url.replace(".svc", ".xml"),
    )
    assert answer.status_code == 200
    expected = ET.fromstring(published("pox-autodiscover-response-for-exchange.2.response.xml"))
    got = ET.fromstring(answer.content)
    assert [local(e.tag) for e in got.iter()] == [local(e.tag) for e in expected.iter()]
    assert got.findtext(".//{*}ErrorCode") == expected.findtext(".//{*}ErrorCode") == "600"


def test_tls_is_verified_against_the_emulators_own_ca(emulator: EwsEmulator) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.post(emulator.url, data=soap("<m:GetFolder/>"), verify=True, timeout=30)
    wrong_path = post(
        emulator,
        soap(create_item(mime_message())),
        url=emulator.url.replace("Exchange.asmx", "Exchange2.asmx"),
    )
    assert wrong_path.status_code == 404
    assert emulator.unknown_requests == ["POST to an unknown path: /ews/exchange2.asmx"]
