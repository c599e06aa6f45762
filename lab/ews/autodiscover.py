"""Autodiscover: SOAP (GetUserSettings at /autodiscover/autodiscover.svc, what exchangelib 5.6
sends) and POX (/autodiscover/autodiscover.xml, what Outlook and most tools send).

- SOAP: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getusersettings-operation-soap
- POX: https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/pox-autodiscover-response-for-exchange

Only the settings that locate EWS for a mailbox are answered; an unknown setting name is answered
in UserSettingErrors (InvalidSetting), as Exchange does; an unknown mailbox with
InvalidUser. The documentation's SOAP example spells the namespace with "https://": Exchange's
WSDL and every client use "http://", which is what is accepted here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lab.ews.engine import Engine
from lab.ews.soap import SOAP, element

A = "http://schemas.microsoft.com/exchange/2010/Autodiscover"
WSA = "http://www.w3.org/2005/08/addressing"
POX_REQUEST = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
POX_RESPONSE = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
POX_OUTLOOK = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
XSI = "http://www.w3.org/2001/XMLSchema-instance"


def autodiscover_answer(engine: Engine, path: str, body: bytes, user: str) -> tuple[int, bytes, str]:
    """(HTTP status, body, content type) for an Autodiscover request."""
    try:
        root = ET.fromstring(body) if b"<!DOCTYPE" not in body[:4096].upper() else None  # noqa: S314 - no DTD (refused above), so no entities
    except ET.ParseError:
        root = None
    if root is None:
        engine.record_unknown("Autodiscover: not well-formed XML")
        return 400, b"", "text/html"
    if path.endswith(".xml"):
        return _pox(engine, root)
    return _soap(engine, root)


def _settings(engine: Engine, smtp: str) -> dict[str, str]:
    version = engine.config.version
    display = engine.config.mailboxes[smtp].display_name or smtp
    return {
        "UserDisplayName": display,
        "UserDN": f"/o=Lab/ou=Exchange Administrative Group/cn=Recipients/cn={smtp.partition('@')[0]}",
        "AutoDiscoverSMTPAddress": smtp,
        "ExternalEwsUrl": f"{engine.base_url}/EWS/Exchange.asmx",
        "InternalEwsUrl": f"{engine.base_url}/EWS/Exchange.asmx",
        "EwsSupportedSchemas": "Exchange2007, Exchange2007_SP1, Exchange2010, Exchange2010_SP1, "
        "Exchange2010_SP2, Exchange2013, Exchange2013_SP1, Exchange2015, Exchange2016",
        "CasVersion": f"{version.major}.{version.minor:02d}.{version.major_build:04d}.{version.minor_build:03d}",
        "MailboxDN": "/o=Lab/ou=Exchange Administrative Group/cn=Configuration/cn=Servers/cn=EXCH01",
        "ExternalMailboxServer": engine.base_url.partition("://")[2],
        "InternalMailboxServer": engine.base_url.partition("://")[2],
    }


def _soap(engine: Engine, root: ET.Element) -> tuple[int, bytes, str]:
    request = root.find(f"{{{SOAP}}}Body/{{{A}}}GetUserSettingsRequestMessage/{{{A}}}Request")
    if request is None:
        engine.record_unknown("Autodiscover: not a GetUserSettings request")
        return 500, b"", "text/xml"
    users = [(m.text or "").strip() for m in request.iterfind(f"{{{A}}}Users/{{{A}}}User/{{{A}}}Mailbox")]
    wanted = [(s.text or "").strip() for s in request.iterfind(f"{{{A}}}RequestedSettings/{{{A}}}Setting")]
    responses = []
    for address in users:
        found = engine.config.mailbox(address)
        if found is None:
            responses.append(
                element(
                    "UserResponse",
                    None,
                    element("ErrorCode", text="InvalidUser"),
                    element("ErrorMessage", text="Invalid user."),
                    element("RedirectTarget", {"i:nil": "true"}),
                    element("UserSettingErrors"),
                    element("UserSettings"),
                )
            )
            continue
        known = _settings(engine, found[0])
        settings = [
            element(
                "UserSetting",
                {"i:type": "StringSetting"},
                element("Name", text=name),
                element("Value", text=known[name]),
            )
            for name in wanted
            if name in known
        ]
        errors = [
            element(
                "UserSettingError",
                None,
                element("ErrorCode", text="InvalidSetting"),
                element("ErrorMessage", text=f"The requested setting, {name}, is invalid."),
                element("SettingName", text=name),
            )
            for name in wanted
            if name not in known
        ]
        responses.append(
            element(
                "UserResponse",
                None,
                element("ErrorCode", text="NoError"),
                element("ErrorMessage", text="No error."),
                element("RedirectTarget", {"i:nil": "true"}),
                element("UserSettingErrors", None, *errors),
                element("UserSettings", None, *settings),
            )
        )
    version = engine.config.version
    server_info = element(
        "h:ServerVersionInfo",
        {"xmlns:h": A, "xmlns:i": XSI},
        element("h:MajorVersion", text=str(version.major)),
        element("h:MinorVersion", text=str(version.minor)),
        element("h:MajorBuildNumber", text=str(version.major_build)),
        element("h:MinorBuildNumber", text=str(version.minor_build)),
        element("h:Version", text="Exchange2015"),
    )
    answer = element(
        "s:Envelope",
        {"xmlns:s": SOAP, "xmlns:a": WSA},
        element(
            "s:Header",
            None,
            element("a:Action", {"s:mustUnderstand": "1"}, text=f"{A}/Autodiscover/GetUserSettingsResponse"),
            server_info,
        ),
        element(
            "s:Body",
            None,
            element(
                "GetUserSettingsResponseMessage",
                {"xmlns": A},
                element(
                    "Response",
                    {"xmlns:i": XSI},
                    element("ErrorCode", text="NoError"),
                    element("ErrorMessage"),
                    element("UserResponses", None, *responses),
                ),
            ),
        ),
    )
    return 200, answer.encode(), "text/xml; charset=utf-8"


def _pox_error(code: str, message: str) -> tuple[int, bytes, str]:
    """A POX error answer, as the POX response page's error example (HTTP 200, ErrorCode in the
    body). The page shows 600 "Invalid Request"; 500 (address not found) and 601 (schema not
    supported) are not listed there: they are what Exchange answers."""
    error = element(
        "Error",
        {"Time": "00:00:00.0000000", "Id": "2477272924"},
        element("ErrorCode", text=code),
        element("Message", text=message),
        element("DebugData"),
    )
    response = element("Response", {"xmlns": POX_RESPONSE}, error)
    return 200, element("Autodiscover", {"xmlns": POX_RESPONSE}, response).encode(), "text/xml; charset=utf-8"


def _pox(engine: Engine, root: ET.Element) -> tuple[int, bytes, str]:
    request = f"{{{POX_REQUEST}}}Request"
    address = (root.findtext(f"{request}/{{{POX_REQUEST}}}EMailAddress") or "").strip()
    schema = (root.findtext(f"{request}/{{{POX_REQUEST}}}AcceptableResponseSchema") or "").strip()
    if root.tag != f"{{{POX_REQUEST}}}Autodiscover" or not address:
        engine.record_unknown("Autodiscover: not a POX request")
        return _pox_error("600", "Invalid Request")
    if schema != POX_OUTLOOK:
        engine.record_unknown(f"Autodiscover: POX response schema {schema!r}")
        return _pox_error("601", "The requested schema version is not supported.")
    found = engine.config.mailbox(address)
    if found is None:
        return _pox_error("500", "The e-mail address cannot be found.")
    settings = _settings(engine, found[0])
    account = element(
        "Account",
        None,
        element("AccountType", text="email"),
        element("Action", text="settings"),
        element(
            "Protocol",
            None,
            element("Type", text="EXCH"),
            element("Server", text=settings["InternalMailboxServer"]),
            element("ASUrl", text=settings["ExternalEwsUrl"]),
            element("EwsUrl", text=settings["ExternalEwsUrl"]),
        ),
        element(
            "Protocol",
            None,
            element("Type", text="EXPR"),
            element("Server", text=settings["ExternalMailboxServer"]),
            element("ASUrl", text=settings["ExternalEwsUrl"]),
            element("EwsUrl", text=settings["ExternalEwsUrl"]),
        ),
    )
    user = element(
        "User",
        None,
        element("DisplayName", text=settings["UserDisplayName"]),
        element("AutoDiscoverSMTPAddress", text=found[0]),
    )
    answer = element(
        "Autodiscover", {"xmlns": POX_RESPONSE}, element("Response", {"xmlns": POX_OUTLOOK}, user, account)
    )
    return 200, answer.encode(), "text/xml; charset=utf-8"
