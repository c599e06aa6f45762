"""The Graph emulator (lab/graph): Microsoft's published request/response examples replayed against
it, and the service's behaviours where migrations break, each through real HTTPS on loopback with a
token msal obtained from the emulator's token endpoint.

The examples live in tests/graph_examples/ (one JSON file each, with the page it comes from; see the
README there). A test fails if the emulator refuses a published request or answers it in another
shape, and every test checks that it used nothing the emulator had to call unknown.
"""

from __future__ import annotations

import base64
import concurrent.futures
import datetime as dt
import email
import hashlib
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from lab.graph import AppConfig, DomainConfig, GraphConfig, GraphEmulator, Limits, UserConfig, default_records
from lab.graph.demo import DEMO_APP_ID, DEMO_APP_SECRET

EXAMPLES = Path(__file__).parent / "graph_examples"
DOMAIN = "contoso.example"
ALICE = f"alice@{DOMAIN}"
BOB = f"bob@{DOMAIN}"
NOBOX = f"nobox@{DOMAIN}"
APP, SECRET = "11111111-aaaa-4bbb-8ccc-000000000001", "app-secret-value"
BASIC_APP = "11111111-aaaa-4bbb-8ccc-000000000002"  # no Mail-Advanced.ReadWrite.All
SCOPED_APP = "11111111-aaaa-4bbb-8ccc-000000000003"  # RBAC scope: alice only
ALL_ROLES = frozenset(
    {
        "Mail.ReadWrite",
        "Mail-Advanced.ReadWrite.All",
        "MailboxSettings.Read",
        "User.Read.All",
        "Domain.Read.All",
    }
)
KEY_ID = "String {8b5c3e2a-1f4d-4c6b-9a7e-3d2f1e0c9b8a} Name CutoverKey"
COLOR = "String {66f5a359-4659-4830-9070-00047ec6ac6e} Name Color"
GRAPH = "https://graph.microsoft.com"


def config(**overrides: Any) -> GraphConfig:
    values: dict[str, Any] = {
        "apps": (
            AppConfig(APP, secret=SECRET, roles=ALL_ROLES),
            AppConfig(BASIC_APP, secret=SECRET, roles=ALL_ROLES - {"Mail-Advanced.ReadWrite.All"}),
            AppConfig(SCOPED_APP, secret=SECRET, roles=ALL_ROLES, mailbox_scope=frozenset({ALICE})),
        ),
        "users": (
            UserConfig(ALICE, display_name="Alice"),
            UserConfig(BOB),
            UserConfig(NOBOX, has_mailbox=False),
        ),
        "domains": (DomainConfig(DOMAIN, default_records(DOMAIN)),),
    }
    values.update(overrides)
    return GraphConfig(**values)


def msal_app(
    emulator: GraphEmulator, client_id: str = APP, credential: Any = None
) -> msal.ConfidentialClientApplication:
    # requests would prefer REQUESTS_CA_BUNDLE from the environment over a session's verify: trust_env off.
    session = requests.Session()
    session.trust_env = False
    session.verify = emulator.ca_file
    if credential is None:
        credential = DEMO_APP_SECRET if client_id == DEMO_APP_ID else SECRET
    return msal.ConfidentialClientApplication(
        client_id,
        client_credential=credential,
        authority=emulator.authority,
        instance_discovery=False,
        http_client=session,
    )


def token(emulator: GraphEmulator, client_id: str = APP) -> str:
    result = msal_app(emulator, client_id).acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert "access_token" in result, result.get("error")
    return str(result["access_token"])


def client(emulator: GraphEmulator, client_id: str = APP) -> httpx.Client:
    return httpx.Client(
        base_url=emulator.graph_url,
        verify=emulator.ssl_context(),
        headers={"Authorization": "Bearer " + token(emulator, client_id)},
        timeout=30,
    )


@pytest.fixture(scope="module")
def emulator() -> Iterator[GraphEmulator]:
    with GraphEmulator(config()) as running:
        yield running
        assert running.internal_errors == []


@pytest.fixture(scope="module")
def graph(emulator: GraphEmulator) -> Iterator[httpx.Client]:
    with client(emulator) as http:
        yield http


@pytest.fixture
def strict(emulator: GraphEmulator) -> Iterator[None]:
    """The test may use nothing the emulator calls unknown."""
    before = len(emulator.unknown_requests)
    yield
    assert emulator.unknown_requests[before:] == []


def new_user(emulator: GraphEmulator, name: str) -> str:
    address = f"{re.sub(r'[^a-z0-9]+', '-', name.lower())}@{DOMAIN}"
    emulator.add_user(UserConfig(address))
    return address


MIME = (
    b"From: Carol <carol@other.example>\r\nTo: Alice <alice@contoso.example>\r\nSubject: Quarterly figures\r\n"
    b"Date: Tue, 02 Jan 2024 09:30:00 +0000\r\nMessage-ID: <q1@other.example>\r\nX-Legacy-Tag: kept\r\n"
    b"Received: from mx.other.example by mx.contoso.example; Tue, 02 Jan 2024 09:31:00 +0000\r\n"
    b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThe figures are attached in spirit.\r\n"
)


def import_mime(http: httpx.Client, user: str, folder: str = "inbox", mime: bytes = MIME) -> httpx.Response:
    return http.post(
        f"/beta/users/{user}/mailFolders/{folder}/importMime",
        content=base64.b64encode(mime),
        headers={"Content-Type": "text/plain"},
    )


def create_json(http: httpx.Client, user: str, folder: str = "inbox", **body: Any) -> httpx.Response:
    payload = {"subject": "s", "body": {"contentType": "text", "content": "hello"}, **body}
    return http.post(f"/v1.0/users/{user}/mailFolders/{folder}/messages", json=payload)


# ---- Microsoft's published examples -----------------------------------------------------------------


def _examples() -> list[str]:
    """The examples replayed as they are (the throttling sample needs its own emulator)."""
    return sorted(p.stem for p in EXAMPLES.glob("*.json") if "replay" not in json.loads(p.read_text()))


def _seed(http: httpx.Client, emulator: GraphEmulator, user: str, kind: str, example: dict[str, Any]) -> str:
    """Make what a published example's sample key stands for, and return its id."""
    base = f"/v1.0/users/{user}"
    if kind in ("inbox_id", "sentitems_id"):
        return str(http.get(f"{base}/mailFolders/{kind[:-3]}").json()["id"])
    if kind == "parent_with_children_id":
        parent = http.post(f"{base}/mailFolders/inbox/childFolders", json={"displayName": "Parent"}).json()[
            "id"
        ]
        http.post(f"{base}/mailFolders/{parent}/childFolders", json={"displayName": "Internal Screens"})
        http.post(
            f"{base}/mailFolders/{parent}/childFolders", json={"displayName": "Clutters", "isHidden": True}
        )
        return str(parent)
    if kind == "message_id":
        return str(import_mime(http, user).json()["id"])
    if kind == "html_message_id":
        html = {
            "contentType": "html",
            "content": "<html><body><p>Welcome to our group, Dana!</p></body></html>",
        }
        return str(create_json(http, user, body=html).json()["id"])
    if kind == "message_with_attachment_id":
        attachment = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "notes.txt",
            "contentBytes": base64.b64encode(b"n").decode(),
        }
        return str(create_json(http, user, attachments=[attachment]).json()["id"])
    if kind == "draft_id":
        return str(create_json(http, user, "drafts").json()["id"])
    if kind == "colored_message_id":
        props = [{"id": COLOR, "value": "Green"}]
        sender = {"emailAddress": {"name": "Christine Irwin", "address": "christine@contoso.com"}}
        made = create_json(
            http, user, singleValueExtendedProperties=props, sender=sender, toRecipients=[sender]
        )
        return str(made.json()["id"])
    if kind == "user_id":
        return str(http.get(f"{base}").json()["id"])
    if kind == "domain":
        return DOMAIN
    raise AssertionError(f"unknown sample key kind {kind}")


def _seed_properties(http: httpx.Client, user: str) -> None:
    """The messages the extended-property filter examples look for."""
    for props in (
        [{"id": COLOR, "value": "Green"}],
        [{"id": COLOR, "value": "Light green"}],
        [{"id": COLOR, "value": "Blue"}],
        [{"id": "Integer {66f5a359-4659-4830-9070-00047ec6ac6e} Name Pallete", "value": "12"}],
        [{"id": "Integer {66f5a359-4659-4830-9070-00047ec6ac6e} Name Pallete", "value": "13"}],
        [
            {
                "id": "CLSID {00062008-0000-0000-C000-000000000046} Name ConnectorSenderGuid",
                "value": "b9cf8971-7d55-4b73-9ffa-a584611b600b",
            }
        ],
        [],
    ):
        assert create_json(http, user, singleValueExtendedProperties=props).status_code == 201


def _assert_shape(
    published: Any, actual: Any, path: str, skip: dict[str, str], nullable: dict[str, str] | None = None
) -> None:
    """actual has every key of published, with a value of the same JSON type (null matches any;
    keys in nullable may be null in actual)."""
    if published is None or (nullable is not None and path.rsplit("/", 1)[-1] in nullable and actual is None):
        return
    if isinstance(published, dict):
        assert isinstance(actual, dict), f"{path}: expected an object, got {actual!r}"
        for key, value in published.items():
            if key in skip:
                continue
            assert key in actual, f"{path}/{key}: missing from the emulator's answer"
            _assert_shape(value, actual[key], f"{path}/{key}", skip, nullable)
    elif isinstance(published, list):
        assert isinstance(actual, list), f"{path}: expected a list, got {actual!r}"
        if published:
            assert actual, f"{path}: the published answer has items, the emulator's none"
            _assert_shape(published[0], actual[0], f"{path}[0]", skip, nullable)
    elif isinstance(published, bool):
        assert isinstance(actual, bool), f"{path}: expected a boolean, got {actual!r}"
    elif isinstance(published, (int, float)):
        assert isinstance(actual, (int, float)) and not isinstance(actual, bool), (
            f"{path}: expected a number, got {actual!r}"
        )
    else:
        assert isinstance(actual, type(published)), (
            f"{path}: expected {type(published).__name__}, got {actual!r}"
        )


@pytest.mark.parametrize("name", _examples())
def test_published_example(name: str, emulator: GraphEmulator, graph: httpx.Client) -> None:
    example = json.loads((EXAMPLES / f"{name}.json").read_text())
    assert example["page"].startswith("https://learn.microsoft.com/")
    user = new_user(emulator, name)
    request, published = example["request"], example["response"]
    url = re.sub(r"/(v1\.0|beta)/me(?=/|$|\?)", rf"/\1/users/{user}", request["url"], flags=re.IGNORECASE)
    url = url.replace(GRAPH, emulator.graph_url)
    for sample, kind in example.get("sample_keys", {}).items():
        url = url.replace(sample, _seed(graph, emulator, user, kind, example))
    if name.startswith("extended-property-filter"):
        _seed_properties(graph, user)
    if example.get("seed") == "message":
        import_mime(graph, user)
    headers = dict(request.get("headers", {}))
    headers.pop("Content-Length", None)
    content: bytes | None = None
    if "body" in request:
        content = json.dumps(request["body"]).encode()
    elif "body_text" in request:
        content = request["body_text"].encode()
    elif "body_bytes" in request:
        content = bytes(i % 251 for i in range(request["body_bytes"]))
    before = len(emulator.unknown_requests)
    if "upload" in example:
        upload = example["upload"]
        draft = create_json(graph, user, "drafts").json()["id"]
        item = {"attachmentType": "file", "name": upload["name"], "size": upload["size"]}
        session = graph.post(
            f"/v1.0/users/{user}/messages/{draft}/attachments/createUploadSession",
            json={"AttachmentItem": item},
        )
        url = session.json()["uploadUrl"]
        with httpx.Client(
            verify=emulator.ssl_context()
        ) as bare:  # pre-authenticated: no Authorization header
            if upload["chunk"] == 1:
                first = bytes(i % 251 for i in range(2097152))
                assert (
                    bare.put(
                        url, content=first, headers={"Content-Range": f"bytes 0-2097151/{upload['size']}"}
                    ).status_code
                    == 200
                )
            answer = bare.put(url, content=content, headers=headers)
    else:
        answer = graph.request(request["method"], url, content=content, headers=headers)

    assert answer.status_code == example.get("expected_status", published["status"]), answer.text
    if "outside_emulator" in example:
        responses = answer.json()["responses"]
        assert sorted(r["id"] for r in responses) == sorted(example["outside_emulator"])
        assert all(r["status"] == 400 and r["body"]["error"]["code"] == "BadRequest" for r in responses)
        assert len(emulator.unknown_requests) - before == len(example["outside_emulator"])
        return
    assert emulator.unknown_requests[before:] == []
    for header in published.get("headers", {}):
        assert header.lower() in {h.lower() for h in answer.headers}, f"header {header} missing"
    if "mime_headers" in published:
        parsed = email.message_from_bytes(answer.content)
        assert all(parsed[h] is not None for h in published["mime_headers"]), answer.text[:400]
        return
    if "body" not in published:
        assert answer.content == b""
        return
    body = answer.json()
    _assert_shape(published["body"], body, "", example.get("not_modelled", {}), example.get("nullable", {}))
    for key, value in example.get("values", {}).items():
        assert body[key] == value, f"{key}: {body[key]!r}"
    for key in example.get("absent", []):
        assert key not in body
    if "matches" in example:
        assert len(body["value"]) == example["matches"]
        assert all(key not in item for item in body["value"] for key in example["absent_in_items"])
    if example.get("exact_keys"):
        assert set(body) == set(published["body"]), set(body) ^ set(published["body"])
    for path, value in example.get("nested_values", {}).items():
        node = body
        for part in path.split("/"):
            node = node[part]
        assert node == value, f"{path}: {node!r}"
    if example.get("exact_item_keys"):
        assert {frozenset(item) for item in body["value"]} == {frozenset(published["body"]["value"][0])}


# ---- tokens --------------------------------------------------------------------------------------------


def _claims(access_token: str) -> dict[str, Any]:
    payload = access_token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def test_msal_obtains_a_token_carrying_the_apps_roles(emulator: GraphEmulator) -> None:
    claims = _claims(token(emulator, BASIC_APP))
    assert set(claims["roles"]) == ALL_ROLES - {"Mail-Advanced.ReadWrite.All"}
    assert claims["appid"] == BASIC_APP and claims["tid"] == emulator.config.tenant_id


def test_a_wrong_secret_or_an_unknown_app_gets_no_token(emulator: GraphEmulator) -> None:
    wrong = msal_app(emulator, APP, "not-the-secret").acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert wrong["error"] == "invalid_client" and "AADSTS7000215" in wrong["error_description"]
    unknown = msal_app(emulator, "00000000-0000-0000-0000-00000000dead").acquire_token_for_client(
        scopes=["https://graph.microsoft.com/.default"]
    )
    assert unknown["error"] == "unauthorized_client"


def _certificate() -> tuple[bytes, bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cutover test app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert_pem, key_pem, hashlib.sha1(cert.public_bytes(serialization.Encoding.DER)).hexdigest()  # noqa: S324 (x5t is SHA-1)


def test_a_certificate_assertion_is_verified_against_the_apps_certificate() -> None:
    cert_pem, key_pem, thumbprint = _certificate()
    other_cert, _, _ = _certificate()
    apps = (
        AppConfig("cert-app", certificate_pem=cert_pem, roles=ALL_ROLES),
        AppConfig("other-app", certificate_pem=other_cert),
    )
    with GraphEmulator(config(apps=apps)) as emulator:
        credential = {"private_key": key_pem.decode(), "thumbprint": thumbprint}
        good = msal_app(emulator, "cert-app", credential).acquire_token_for_client(
            scopes=["https://graph.microsoft.com/.default"]
        )
        assert set(_claims(good["access_token"])["roles"]) == ALL_ROLES
        bad = msal_app(emulator, "other-app", credential).acquire_token_for_client(
            scopes=["https://graph.microsoft.com/.default"]
        )
        assert bad["error"] == "invalid_client"


def test_every_request_needs_a_valid_unexpired_token(emulator: GraphEmulator) -> None:
    with httpx.Client(base_url=emulator.graph_url, verify=emulator.ssl_context()) as bare:
        missing = bare.get(f"/v1.0/users/{ALICE}/mailFolders/inbox")
        forged = bare.get(f"/v1.0/users/{ALICE}/mailFolders/inbox", headers={"Authorization": "Bearer a.b.c"})
    assert (missing.status_code, missing.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    assert (forged.status_code, forged.json()["error"]["code"]) == (401, "InvalidAuthenticationToken")
    with GraphEmulator(config(token_lifetime=120)) as short:
        claims = _claims(token(short))
        assert 119 <= claims["exp"] - claims["iat"] <= 121
        with client(short) as http:
            assert http.get(f"/v1.0/users/{ALICE}/mailFolders/inbox").status_code == 200
            short.expire_tokens()
            expired = http.get(f"/v1.0/users/{ALICE}/mailFolders/inbox")
        assert expired.status_code == 401 and "expired" in expired.json()["error"]["message"]
        assert "WWW-Authenticate" in expired.headers


# ---- creating messages ----------------------------------------------------------------------------------


def test_a_plain_create_is_a_draft_stamped_now_whatever_dates_it_carries(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "plain-create")
    sent = create_json(
        graph,
        user,
        receivedDateTime="2019-05-01T10:00:00Z",
        sentDateTime="2019-05-01T09:59:00Z",
        internetMessageHeaders=[
            {"name": "Received", "value": "from a by b; Wed, 1 May 2019 10:00:00 +0000"},
            {"name": "x-origin", "value": "legacy"},
        ],
        isRead=False,
    )
    assert sent.status_code == 201
    answer = sent.json()
    assert answer["isDraft"] is True and answer["receivedDateTime"] != "2019-05-01T10:00:00Z"
    [item] = emulator.items(user)
    assert item.is_draft and item.route == "json" and item.received.year >= 2026
    assert item.headers == (("x-origin", "legacy"),)  # custom x- headers only


def test_extended_properties_at_creation_make_a_dated_non_draft(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "dated-create")
    props = [
        {"id": "Integer 0x0E07", "value": "1"},
        {"id": "SystemTime 0x0E06", "value": "2020-03-04T05:06:07Z"},
        {"id": "SystemTime 0x0039", "value": "2020-03-04T05:00:00Z"},
        {
            "id": "String 0x007D",
            "value": "Received: from a by b; Wed, 4 Mar 2020 05:06:00 +0000\r\nX-Mailer: old",
        },
        {"id": "String 0x1042", "value": "<parent@x>"},
        {"id": "String 0x1039", "value": "<root@x> <parent@x>"},
        {"id": KEY_ID, "value": "ledger-key-1"},
    ]
    answer = create_json(graph, user, singleValueExtendedProperties=props).json()
    assert answer["isDraft"] is False and answer["isRead"] is True
    assert (answer["receivedDateTime"], answer["sentDateTime"]) == (
        "2020-03-04T05:06:07Z",
        "2020-03-04T05:00:00Z",
    )
    [item] = emulator.items(user)
    assert (item.in_reply_to, item.references) == ("<parent@x>", "<root@x> <parent@x>")
    assert ("X-Mailer", "old") in item.headers and item.properties[KEY_ID] == "ledger-key-1"
    # The service answers tag ids in its own spelling (lower-case hex, no leading zeros), whatever
    # the request's; PR_MESSAGE_SIZE is there without being set.
    wanted = " or ".join(
        f"id eq '{i}'" for i in ("Integer 0x0E07", "Integer 0x0E08", "String 0x007D", KEY_ID)
    )
    read = graph.get(
        f"/v1.0/users/{user}/messages/{answer['id']}",
        params={"$expand": f"singleValueExtendedProperties($filter={wanted})"},
    )
    ids = {p["id"]: p["value"] for p in read.json()["singleValueExtendedProperties"]}
    assert set(ids) == {"Integer 0xe07", "Integer 0xe08", "String 0x7d", KEY_ID.replace("8B5C", "8b5c")}
    assert ids["Integer 0xe07"] == "1" and int(ids["Integer 0xe08"]) > 0
    # Unread non-draft: the flags without MSGFLAG_READ.
    unread = create_json(
        graph, user, singleValueExtendedProperties=[{"id": "Integer 0x0E07", "value": "0"}]
    ).json()
    assert (unread["isDraft"], unread["isRead"]) == (False, False)


def test_message_flags_are_frozen_after_creation(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "frozen-flags")
    draft = create_json(graph, user).json()
    patched = graph.patch(
        f"/v1.0/users/{user}/messages/{draft['id']}",
        json={"singleValueExtendedProperties": [{"id": "Integer 0x0E07", "value": "1"}]},
    )
    assert patched.status_code == 200 and patched.json()["isDraft"] is True


def test_importmime_makes_a_non_draft_and_needs_its_permission(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "import-mime")
    made = import_mime(graph, user)
    assert made.status_code == 201 and made.json()["isDraft"] is False
    [item] = emulator.items(user)
    assert (item.route, item.folder, item.subject, item.sent) == (
        "importMime",
        "Inbox",
        "Quarterly figures",
        dt.datetime(2024, 1, 2, 9, 30, tzinfo=dt.UTC),
    )
    with client(emulator, BASIC_APP) as basic:
        refused = import_mime(basic, user)
    assert (refused.status_code, refused.json()["error"]["code"]) == (403, "ErrorAccessDenied")
    on_v1 = graph.post(
        f"/v1.0/users/{user}/mailFolders/inbox/importMime",
        content=base64.b64encode(MIME),
        headers={"Content-Type": "text/plain"},
    )
    assert on_v1.status_code == 400
    emulator.tenant.unknown_requests.pop()  # that one was meant to be unknown


def test_a_tenant_without_importmime_answers_400_without_calling_it_unknown() -> None:
    with GraphEmulator(config(supports_import_mime=False)) as emulator, client(emulator) as http:
        answer = import_mime(http, ALICE)
        assert (answer.status_code, answer.json()["error"]["code"]) == (400, "BadRequest")
        assert "importMime" in answer.json()["error"]["message"]
        assert emulator.unknown_requests == []


def test_importmime_received_time_is_configurable() -> None:
    with GraphEmulator(config(import_mime_received="received")) as emulator, client(emulator) as http:
        assert import_mime(http, ALICE).json()["receivedDateTime"] == "2024-01-02T09:31:00Z"


def test_a_request_over_4_mb_is_413(emulator: GraphEmulator, graph: httpx.Client, strict: None) -> None:
    user = new_user(emulator, "too-large")
    attachment = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "big.bin",
        "contentBytes": base64.b64encode(b"x" * 3_200_000).decode(),
    }
    answer = create_json(graph, user, attachments=[attachment])
    assert answer.status_code == 413 and emulator.items(user) == []
    small = dict(attachment, contentBytes=base64.b64encode(b"y" * 100_000).decode())
    assert create_json(graph, user, attachments=[small]).status_code == 201
    assert emulator.items(user)[0].attachments == (("big.bin", b"y" * 100_000),)


def test_upload_sessions_take_3_to_150_mb_in_order(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "upload-session")
    draft = create_json(graph, user).json()["id"]
    session_url = f"/v1.0/users/{user}/messages/{draft}/attachments/createUploadSession"
    small = graph.post(
        session_url, json={"AttachmentItem": {"attachmentType": "file", "name": "s", "size": 1_000_000}}
    )
    assert (small.status_code, small.json()["error"]["code"]) == (
        400,
        "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize",
    )
    size = 3 * 1024 * 1024 + 10
    data = bytes(i % 253 for i in range(size))
    upload_url = graph.post(
        session_url, json={"AttachmentItem": {"attachmentType": "file", "name": "big.bin", "size": size}}
    ).json()["uploadUrl"]
    with httpx.Client(verify=emulator.ssl_context()) as bare:
        skipped = bare.put(upload_url, content=data[10:20], headers={"Content-Range": f"bytes 10-19/{size}"})
        assert skipped.status_code == 416
        authorized = bare.put(
            upload_url,
            content=data[:10],
            headers={"Content-Range": f"bytes 0-9/{size}", "Authorization": "Bearer x"},
        )
        assert authorized.status_code == 401
        first = bare.put(
            upload_url, content=data[:2_000_000], headers={"Content-Range": f"bytes 0-1999999/{size}"}
        )
        assert first.json()["nextExpectedRanges"] == ["2000000"]
        again = bare.put(upload_url, content=data[:10], headers={"Content-Range": f"bytes 0-9/{size}"})
        assert again.status_code == 416
        last = bare.put(
            upload_url,
            content=data[2_000_000:],
            headers={"Content-Range": f"bytes 2000000-{size - 1}/{size}"},
        )
    assert last.status_code == 201 and "/Attachments('" in last.headers["Location"]
    [item] = emulator.items(user)
    assert item.attachments == (("big.bin", data),)
    cancelled = graph.post(
        session_url, json={"AttachmentItem": {"attachmentType": "file", "name": "c", "size": size}}
    ).json()["uploadUrl"]
    with httpx.Client(verify=emulator.ssl_context()) as bare:
        assert bare.delete(cancelled).status_code == 204
        assert (
            bare.put(cancelled, content=data[:10], headers={"Content-Range": f"bytes 0-9/{size}"}).status_code
            == 404
        )
    listed = graph.get(f"/v1.0/users/{user}/messages/{draft}/attachments").json()["value"]
    assert base64.b64decode(listed[0]["contentBytes"]) == data


def test_named_properties_have_a_quota() -> None:
    with GraphEmulator(config(limits=Limits(named_properties=2))) as emulator, client(emulator) as http:
        names = [f"String {{8b5c3e2a-1f4d-4c6b-9a7e-3d2f1e0c9b8a}} Name Key{n}" for n in range(3)]
        codes = [
            create_json(http, ALICE, singleValueExtendedProperties=[{"id": n, "value": "v"}]).status_code
            for n in names
        ]
        assert codes == [201, 201, 507]
        again = create_json(http, ALICE, singleValueExtendedProperties=[{"id": names[0], "value": "w"}])
        assert again.status_code == 201  # a name already used costs nothing
        full = create_json(http, ALICE, singleValueExtendedProperties=[{"id": names[2], "value": "v"}]).json()
        assert full["error"] == {
            **full["error"],
            "code": "ErrorQuotaExceeded",
            "message": "Cannot get ID from name.",
        }


def test_size_and_quota_refusals(emulator: GraphEmulator, graph: httpx.Client, strict: None) -> None:
    emulator.add_user(UserConfig(f"tiny@{DOMAIN}", max_receive_size=50_000, quota_bytes=200_000))
    big = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "a",
        "contentBytes": base64.b64encode(b"z" * 60_000).decode(),
    }
    refused = create_json(graph, f"tiny@{DOMAIN}", attachments=[big])
    assert (refused.status_code, refused.json()["error"]["code"]) == (413, "ErrorMessageSizeExceeded")
    fits = dict(big, contentBytes=base64.b64encode(b"z" * 40_000).decode())
    codes = [create_json(graph, f"tiny@{DOMAIN}", attachments=[fits]).status_code for _ in range(5)]
    assert codes[:4] == [201, 201, 201, 201] and codes[4] == 507


# ---- finding, reading, moving -------------------------------------------------------------------------------


def test_filter_on_the_key_property_finds_the_item(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "key-filter")
    for key in ("k-1", "k-2", "k-3"):
        create_json(graph, user, singleValueExtendedProperties=[{"id": KEY_ID, "value": key}])
    create_json(graph, user)
    found = graph.get(
        f"/v1.0/users/{user}/mailFolders/inbox/messages",
        params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{KEY_ID}' and ep/value eq 'K-2')",
            "$select": "id,isDraft",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{KEY_ID}')",
        },
    ).json()["value"]
    assert [m["singleValueExtendedProperties"][0]["value"] for m in found] == ["k-2"]
    # The property's Name compares case-sensitively (singlevaluelegacyextendedproperty-get).
    other_case = KEY_ID.replace("CutoverKey", "cutoverkey")
    none = graph.get(
        f"/v1.0/users/{user}/messages",
        params={
            "$filter": f"singleValueExtendedProperties/Any(ep: ep/id eq '{other_case}' and ep/value eq 'k-2')"
        },
    ).json()["value"]
    assert none == []


def test_reads_page_with_next_links_and_give_html_unless_text_is_preferred(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "paging")
    for n in range(5):
        graph.post(f"/v1.0/users/{user}/mailFolders/inbox/childFolders", json={"displayName": f"F{n}"})
        create_json(graph, user)
    names: list[str] = []
    url: str | None = f"/v1.0/users/{user}/mailFolders/inbox/childFolders?$top=2"
    pages = 0
    while url:
        page = graph.get(url).json()
        names += [f["displayName"] for f in page["value"]]
        url, pages = page.get("@odata.nextLink"), pages + 1
    assert sorted(names) == [f"F{n}" for n in range(5)] and pages == 3
    listed = graph.get(f"/v1.0/users/{user}/messages", params={"$top": "2", "$count": "true"}).json()
    assert (
        listed["@odata.count"] == 5 and len(listed["value"]) == 2 and "$skip=2" in listed["@odata.nextLink"]
    )
    assert listed["value"][0]["body"]["contentType"] == "html"
    texts = graph.get(f"/v1.0/users/{user}/messages", headers={"Prefer": 'outlook.body-content-type="text"'})
    assert texts.json()["value"][0]["body"] == {"contentType": "text", "content": "hello"}
    assert "outlook.body-content-type" in texts.headers["Preference-Applied"]


def test_folder_names_collide_case_insensitively(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "collide")
    assert (
        graph.post(
            f"/v1.0/users/{user}/mailFolders/inbox/childFolders", json={"displayName": "Projects"}
        ).status_code
        == 201
    )
    again = graph.post(f"/v1.0/users/{user}/mailFolders/inbox/childFolders", json={"displayName": "PROJECTS"})
    assert (again.status_code, again.json()["error"]["code"]) == (409, "ErrorFolderExists")
    assert graph.post(f"/v1.0/users/{user}/mailFolders", json={"displayName": "Projects"}).status_code == 201
    assert "Inbox/Projects" in emulator.folders(user) and "Projects" in emulator.folders(user)


def test_ids_change_on_move_unless_immutable_ids_were_asked_for(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "move")
    regular = import_mime(graph, user).json()["id"]
    moved = graph.post(f"/v1.0/users/{user}/messages/{regular}/move", json={"destinationId": "archive"})
    assert moved.status_code == 201 and moved.json()["id"] != regular
    assert graph.get(f"/v1.0/users/{user}/messages/{regular}").status_code == 404
    immutable = {"Prefer": 'IdType="ImmutableId"'}
    made = graph.post(
        f"/beta/users/{user}/mailFolders/inbox/importMime",
        content=base64.b64encode(MIME),
        headers={"Content-Type": "text/plain", **immutable},
    )
    stable = made.json()["id"]
    assert made.headers["Preference-Applied"] == 'IdType="ImmutableId"'
    after = graph.post(
        f"/v1.0/users/{user}/messages/{stable}/move",
        json={"destinationId": "deleteditems"},
        headers=immutable,
    )
    assert after.json()["id"] == stable
    assert (
        graph.get(f"/v1.0/users/{user}/messages/{stable}", headers=immutable).json()["parentFolderId"]
        == after.json()["parentFolderId"]
    )


def test_update_sets_read_flag_and_categories(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "update")
    message = import_mime(graph, user).json()["id"]
    answer = graph.patch(
        f"/v1.0/users/{user}/messages/{message}",
        json={"isRead": True, "flag": {"flagStatus": "flagged"}, "categories": ["Red", "$label1"]},
    )
    assert answer.status_code == 200
    [item] = emulator.items(user)
    assert (item.is_read, item.flag_status, item.categories) == (True, "flagged", ("Red", "$label1"))
    refused = graph.patch(f"/v1.0/users/{user}/messages/{message}", json={"subject": "new"})
    assert refused.status_code == 400  # subject: drafts only


def test_value_is_rendered_from_what_the_item_keeps(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "mime-value")
    message = import_mime(graph, user).json()["id"]
    emulator.tamper(user, message, sent=dt.datetime(2001, 1, 1, tzinfo=dt.UTC), body="changed")
    rendered = email.message_from_bytes(graph.get(f"/v1.0/users/{user}/messages/{message}/$value").content)
    assert rendered["Date"] == "Mon, 01 Jan 2001 00:00:00 +0000" and rendered["X-Legacy-Tag"] == "kept"
    assert rendered.get_payload(decode=True).decode().strip() == "changed"


def test_tampered_attachment_bytes_show_in_reads(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "tamper")
    attachment = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": "a.txt",
        "contentBytes": base64.b64encode(b"original").decode(),
    }
    message = create_json(graph, user, attachments=[attachment]).json()["id"]
    emulator.tamper(user, message, attachment=(0, b"tampered"))
    read = graph.get(f"/v1.0/users/{user}/messages/{message}", params={"$expand": "attachments"}).json()
    assert base64.b64decode(read["attachments"][0]["contentBytes"]) == b"tampered"


# ---- who may reach which mailbox -------------------------------------------------------------------------------


def test_mailbox_refusals(emulator: GraphEmulator, graph: httpx.Client, strict: None) -> None:
    nobox = graph.get(f"/v1.0/users/{NOBOX}/mailboxSettings")
    assert (nobox.status_code, nobox.json()["error"]["code"]) == (404, "MailboxNotEnabledForRESTAPI")
    assert graph.get(f"/v1.0/users/{NOBOX}").status_code == 200  # the user exists
    unknown = graph.get(f"/v1.0/users/ghost@{DOMAIN}/mailFolders/inbox")
    assert (unknown.status_code, unknown.json()["error"]["code"]) == (404, "ErrorInvalidUser")
    with client(emulator, SCOPED_APP) as scoped:
        assert scoped.get(f"/v1.0/users/{ALICE}/mailboxSettings").status_code == 200
        outside = scoped.get(f"/v1.0/users/{BOB}/mailboxSettings")
    assert (outside.status_code, outside.json()["error"]["code"]) == (403, "ErrorAccessDenied")


def test_domains_answer_their_records_to_an_app_with_the_role() -> None:
    apps = (AppConfig(APP, secret=SECRET, roles=ALL_ROLES - {"Domain.Read.All"}),)
    with GraphEmulator(config(apps=apps)) as emulator, client(emulator) as http:
        denied = http.get(f"/v1.0/domains/{DOMAIN}/serviceConfigurationRecords")
        assert (denied.status_code, denied.json()["error"]["code"]) == (403, "Authorization_RequestDenied")
    with GraphEmulator(config()) as emulator, client(emulator) as http:
        records = http.get(f"/v1.0/domains/{DOMAIN}/serviceConfigurationRecords").json()["value"]
        assert {r["recordType"] for r in records} == {"Mx", "Txt", "CName"}
        assert http.get("/v1.0/domains/unknown.example/serviceConfigurationRecords").status_code == 404


# ---- strictness -----------------------------------------------------------------------------------------------


def test_unknown_paths_fields_and_options_are_400_and_recorded(
    emulator: GraphEmulator, graph: httpx.Client
) -> None:
    before = len(emulator.unknown_requests)
    answers = [
        graph.get(f"/v1.0/users/{ALICE}/messages", params={"$search": '"x"'}),
        graph.get(f"/v1.0/users/{ALICE}/messages", params={"$select": "subject,colour"}),
        graph.get(f"/v1.0/users/{ALICE}/mailFolders/inbox/rules"),
        graph.get("/v1.0/me/messages"),
        create_json(graph, ALICE, importanceLevel="high"),
        create_json(graph, ALICE, body={"contentType": "text", "content": "x", "charset": "utf-8"}),
        graph.get(
            f"/v1.0/users/{ALICE}/messages", params={"$filter": "startswith(subject, 'a') or unknownfunc(x)"}
        ),
    ]
    assert [a.status_code for a in answers] == [400] * 7
    assert all(a.json()["error"]["code"] in ("BadRequest", "RequestBodyRead") for a in answers)
    assert len(emulator.unknown_requests) - before == 7
    del emulator.tenant.unknown_requests[before:]


def test_a_batch_requests_json_body_handed_over_parsed_is_checked_as_strictly(
    emulator: GraphEmulator, graph: httpx.Client
) -> None:
    # A $batch request's JSON body reaches the handler already parsed (SubRequest.parsed_body):
    # unknown fields, at the top or nested, and a body that is no object are refused as when sent alone.
    before = len(emulator.unknown_requests)
    create = {"subject": "s", "body": {"contentType": "text", "content": "hello"}}
    bodies = [
        {**create, "importanceLevel": "high"},
        {**create, "body": {"contentType": "text", "content": "x", "charset": "utf-8"}},
        ["not", "an", "object"],
    ]
    url = f"/users/{ALICE}/mailFolders/inbox/messages"
    requests = [
        {
            "id": str(n),
            "method": "POST",
            "url": url,
            "headers": {"Content-Type": "application/json"},
            "body": b,
        }
        for n, b in enumerate(bodies)
    ]
    answers = graph.post("/v1.0/$batch", json={"requests": requests}).json()["responses"]
    alone = [graph.post(f"/v1.0{url}", json=b) for b in bodies]
    assert [(a["status"], a["body"]["error"]["code"]) for a in sorted(answers, key=lambda a: a["id"])] == [
        (r.status_code, r.json()["error"]["code"]) for r in alone
    ]
    assert all(r.status_code == 400 for r in alone)
    assert len(emulator.unknown_requests) - before == 4  # the unknown fields, batched and alone
    del emulator.tenant.unknown_requests[before:]


# ---- pace -----------------------------------------------------------------------------------------------------


def test_published_throttling_answer() -> None:
    example = json.loads((EXAMPLES / "throttling-sample-response.json").read_text())
    published = example["response"]
    with (
        GraphEmulator(config(limits=Limits(requests=1, request_window=60.0))) as emulator,
        client(emulator) as http,
    ):
        url = example["request"]["url"].replace(f"{GRAPH}/v1.0/me", f"/v1.0/users/{ALICE}")
        assert http.get(url).status_code == 200
        answer = http.get(url)
    assert answer.status_code == published["status"] and "Retry-After" in answer.headers
    _assert_shape(published["body"], answer.json(), "", {})
    assert answer.json()["error"]["code"] == "TooManyRequests"


def test_request_window_answers_429_with_retry_after() -> None:
    limits = Limits(requests=3, request_window=60.0)
    with GraphEmulator(config(limits=limits)) as emulator, client(emulator) as http:
        codes = [http.get(f"/v1.0/users/{ALICE}/mailFolders/inbox").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        throttled = http.get(f"/v1.0/users/{ALICE}/mailFolders/inbox")
        assert 1 <= int(throttled.headers["Retry-After"]) <= 60
        assert http.get(f"/v1.0/users/{BOB}/mailFolders/inbox").status_code == 200  # another mailbox's budget
        assert [e.reason for e in emulator.throttled] == ["Requests", "Requests"]
        assert emulator.throttled_after(3600) == []


def test_upload_window_counts_request_bytes() -> None:
    limits = Limits(upload_bytes=300_000, upload_window=60.0)
    with GraphEmulator(config(limits=limits)) as emulator, client(emulator) as http:
        attachment = {
            "@odata.type": "#microsoft.graph.fileAttachment",
            "name": "a",
            "contentBytes": base64.b64encode(b"q" * 100_000).decode(),
        }
        codes = [create_json(http, ALICE, attachments=[attachment]).status_code for _ in range(3)]
        assert codes == [201, 201, 429]
        assert (
            emulator.throttled[-1].reason == "UploadBytes" and emulator.throttled[-1].retry_after is not None
        )


def test_a_fifth_concurrent_request_is_429_mailboxconcurrency_without_retry_after() -> None:
    with GraphEmulator(config()) as emulator, client(emulator) as http:
        gate = emulator.gate(ALICE)
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            held = [pool.submit(http.get, f"/v1.0/users/{ALICE}/mailFolders/inbox") for _ in range(4)]
            assert gate.wait_held(4)
            fifth = httpx.get(
                f"{emulator.graph_url}/v1.0/users/{ALICE}/mailFolders/inbox",
                headers={"Authorization": http.headers["Authorization"]},
                verify=emulator.ssl_context(),
            )
            gate.release()
            assert [f.result().status_code for f in held] == [200] * 4
        assert fifth.status_code == 429 and "Retry-After" not in fifth.headers
        assert fifth.json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
        assert emulator.peak_in_flight(ALICE) == 4


def test_mailboxconcurrency_can_carry_retry_after() -> None:
    with (
        GraphEmulator(config(limits=Limits(concurrency=1, concurrency_retry_after=2))) as emulator,
        client(emulator) as http,
    ):
        gate = emulator.gate(ALICE)
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            held = pool.submit(http.get, f"/v1.0/users/{ALICE}/mailFolders/inbox")
            assert gate.wait_held(1)
            second = httpx.get(
                f"{emulator.graph_url}/v1.0/users/{ALICE}/mailFolders/inbox",
                headers={"Authorization": http.headers["Authorization"]},
                verify=emulator.ssl_context(),
            )
            gate.release()
            assert held.result().status_code == 200
        assert second.status_code == 429 and second.headers["Retry-After"] == "2"


def test_batch_holds_per_request_statuses_with_429_inside_a_200() -> None:
    with (
        GraphEmulator(config(limits=Limits(requests=3, request_window=60.0))) as emulator,
        client(emulator) as http,
    ):
        requests_ = [
            {"id": str(n), "method": "GET", "url": f"/users/{ALICE}/mailFolders/inbox"} for n in range(5)
        ]
        answer = http.post("/v1.0/$batch", json={"requests": requests_})
        assert answer.status_code == 200
        statuses = sorted(r["status"] for r in answer.json()["responses"])
        assert statuses == [200, 200, 200, 429, 429]
        throttled = [r for r in answer.json()["responses"] if r["status"] == 429]
        assert all("Retry-After" in r["headers"] for r in throttled)
        assert emulator.unknown_requests == []


def test_batch_depends_on_and_its_limits(emulator: GraphEmulator, graph: httpx.Client, strict: None) -> None:
    user = new_user(emulator, "batch")
    create = {"subject": "b", "body": {"contentType": "text", "content": "x"}}
    body = {
        "requests": [
            {
                "id": "a",
                "method": "POST",
                "url": f"/users/{user}/mailFolders/inbox/messages",
                "headers": {"Content-Type": "application/json"},
                "body": create,
            },
            {
                "id": "b",
                "method": "GET",
                "url": f"/users/{user}/mailFolders/nosuchfolder",
                "dependsOn": ["a"],
            },
            {"id": "c", "method": "GET", "url": f"/users/{user}/mailFolders/inbox", "dependsOn": ["b"]},
            {
                "id": "d",
                "method": "POST",
                "url": f"/beta/users/{user}/mailFolders/inbox/importMime".replace("/beta", ""),
                "headers": {"Content-Type": "text/plain"},
                "body": base64.b64encode(base64.b64encode(MIME)).decode(),
            },
        ]
    }
    answer = graph.post("/beta/$batch", json=body).json()["responses"]
    by_id = {r["id"]: r["status"] for r in answer}
    assert by_id == {"a": 201, "b": 404, "c": 424, "d": 201}
    assert sorted(i.route for i in emulator.items(user)) == ["importMime", "json"]
    too_many = [{"id": str(n), "method": "GET", "url": f"/users/{user}/mailFolders/inbox"} for n in range(21)]
    assert graph.post("/v1.0/$batch", json={"requests": too_many}).status_code == 400
    nested = {
        "id": "n",
        "method": "POST",
        "url": "/$batch",
        "headers": {"Content-Type": "application/json"},
        "body": {"requests": too_many[:1]},
    }
    assert graph.post("/v1.0/$batch", json={"requests": [nested]}).json()["responses"][0]["status"] == 400
    assert emulator.tenant.unknown_requests.pop() == "POST $batch inside $batch"


# ---- faults on command ---------------------------------------------------------------------------------------------


def test_a_dropped_answer_after_a_create_leaves_the_item(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "dropped")
    emulator.drop_after_create(mailbox=user)
    with pytest.raises(httpx.TransportError):
        create_json(graph, user, singleValueExtendedProperties=[{"id": KEY_ID, "value": "uncertain"}])
    [item] = emulator.items(user)
    assert item.properties[KEY_ID] == "uncertain" and emulator.dropped_creates == [item.immutable_id]
    assert create_json(graph, user).status_code == 201  # only once


def test_503s_and_slow_answers_on_command(emulator: GraphEmulator, graph: httpx.Client, strict: None) -> None:
    user = new_user(emulator, "unavailable")
    emulator.fail_with_503(2, mailbox=user, retry_after=3)
    first = create_json(graph, user)
    assert (first.status_code, first.headers["Retry-After"]) == (503, "3")
    assert create_json(graph, user).status_code == 503
    assert create_json(graph, user).status_code == 201 and len(emulator.items(user)) == 1
    emulator.slow(0.2, mailbox=user)
    done = threading.Event()

    def watch() -> None:
        emulator.tenant.throttle.wait_in_flight(user, 1, 10)
        done.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    assert graph.get(f"/v1.0/users/{user}/mailFolders/inbox").status_code == 200
    watcher.join()
    assert done.is_set()


def test_counters_say_which_route_made_what(
    emulator: GraphEmulator, graph: httpx.Client, strict: None
) -> None:
    user = new_user(emulator, "counters")
    import_mime(graph, user)
    create_json(graph, user)
    counts = emulator.request_counts(user)
    assert (counts["create:importMime"], counts["create:json"], counts["requests"], counts["status:201"]) == (
        1,
        1,
        2,
        2,
    )


def test_the_demo_tenant_holds_the_labs_target_users() -> None:
    from lab import data
    from lab.graph.demo import demo_config

    with GraphEmulator(demo_config()) as emulator, client(emulator, DEMO_APP_ID) as http:
        assert http.get(f"/v1.0/users/{data.address('alice.adams')}/mailboxSettings").status_code == 200
        missing = http.get(f"/v1.0/users/{data.address(data.MISSING_ON_TARGET)}/mailboxSettings")
        assert missing.json()["error"]["code"] == "ErrorInvalidUser"
