"""SOAP as Exchange speaks it: the namespaces, request parsing, and the shapes of answers and faults.

Answers are written as text (``element``), never through a global namespace registry, so that the
prefixes are the ones Exchange uses: ``s:`` for the envelope, ``m:`` for messages, ``t:`` for types.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from lab.ews.config import ServerVersion

SOAP = "http://schemas.xmlsoap.org/soap/envelope/"
M = "http://schemas.microsoft.com/exchange/services/2006/messages"
T = "http://schemas.microsoft.com/exchange/services/2006/types"
E = "http://schemas.microsoft.com/exchange/services/2006/errors"
PREFIXES = {"s": SOAP, "m": M, "t": T}


def q(name: str) -> str:
    """``"t:Subject"`` as ElementTree spells it: ``"{types namespace}Subject"``."""
    prefix, _, local = name.partition(":")
    return f"{{{PREFIXES[prefix]}}}{local}"


def short(tag: str) -> str:
    """ElementTree's ``{namespace}Name`` as ``t:Name`` (or the full form for a foreign namespace)."""
    for prefix, namespace in PREFIXES.items():
        if tag.startswith(f"{{{namespace}}}"):
            return f"{prefix}:{tag[len(namespace) + 2 :]}"
    return tag


class SoapFault(Exception):
    """A request Exchange refuses as a whole: answered as a SOAP fault (HTTP 500)."""

    def __init__(
        self, code: str, message: str, *, values: Iterable[tuple[str, str]] = (), violation: str = ""
    ) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.values = tuple(values)
        self.violation = violation


class ItemError(Exception):
    """One item (or folder) of a request fails: answered as that item's ResponseMessage with
    ResponseClass="Error"; the other items of the request go on."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def schema_error(violation: str) -> SoapFault:
    """ErrorSchemaValidation as Exchange words it (the .NET validator's violation text)."""
    return SoapFault("ErrorSchemaValidation", "The request failed schema validation.", violation=violation)


def parse(body: bytes) -> ET.Element:
    """The request's XML. A document type declaration is refused, as .NET's XmlReader does by default
    (it would allow entity expansion)."""
    if b"<!DOCTYPE" in body[:4096].upper():
        raise schema_error("DTD is prohibited in this XML document.")
    try:
        return ET.fromstring(body)  # noqa: S314 - no DTD (refused above), so no entities
    except ET.ParseError as exc:
        raise schema_error(f"The request is not well-formed XML: {exc}") from exc


def element(name: str, attrs: dict[str, str] | None = None, *children: str, text: str | None = None) -> str:
    """One element as text; ``children`` are already-rendered elements."""
    attributes = "".join(f" {key}={quoteattr(value)}" for key, value in (attrs or {}).items())
    inner = escape(text) if text is not None else "".join(children)
    if not inner:
        return f"<{name}{attributes}/>"
    return f"<{name}{attributes}>{inner}</{name}>"


def _envelope(header: str, body: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>'
        f'<s:Envelope xmlns:s="{SOAP}">'
        f"{header}<s:Body>{body}</s:Body></s:Envelope>"
    ).encode()


def server_version_header(version: ServerVersion) -> str:
    """The SOAP header every EWS answer carries (ServerVersionInfo element page:
    https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/serverversioninfo)."""
    info = element(
        "h:ServerVersionInfo",
        {
            "MajorVersion": str(version.major),
            "MinorVersion": str(version.minor),
            "MajorBuildNumber": str(version.major_build),
            "MinorBuildNumber": str(version.minor_build),
            "Version": version.version,
            "xmlns:h": T,
            "xmlns": T,
            "xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        },
    )
    return f"<s:Header>{info}</s:Header>"


def response(version: ServerVersion, operation: str, messages: Iterable[str]) -> bytes:
    """``<m:{operation}Response><m:ResponseMessages>…`` in the envelope with the version header."""
    body = element(
        f"m:{operation}Response",
        {
            "xmlns:m": M,
            "xmlns:t": T,
            "xmlns:xsd": "http://www.w3.org/2001/XMLSchema",
            "xmlns:xsi": "http://www.w3.org/2001/XMLSchema-instance",
        },
        element("m:ResponseMessages", None, *messages),
    )
    return _envelope(server_version_header(version), body)


def response_body(
    version: ServerVersion, operation: str, *children: str, attrs: dict[str, str] | None = None
) -> bytes:
    """An answer without ResponseMessages (GetMailTips, which carries its own)."""
    body = element(
        f"m:{operation}Response",
        {"xmlns:m": M, "xmlns:t": T, **(attrs or {})},
        *children,
    )
    return _envelope(server_version_header(version), body)


def success(operation: str, *children: str) -> str:
    return element(
        f"m:{operation}ResponseMessage",
        {"ResponseClass": "Success"},
        element("m:ResponseCode", text="NoError"),
        *children,
    )


def failure(operation: str, error: ItemError, *children: str) -> str:
    return element(
        f"m:{operation}ResponseMessage",
        {"ResponseClass": "Error"},
        element("m:MessageText", text=error.message),
        element("m:ResponseCode", text=error.code),
        element("m:DescriptiveLinkKey", text="0"),
        *children,
    )


def fault(version: ServerVersion | None, exc: SoapFault) -> bytes:
    """A SOAP fault as Exchange sends it: faultcode in the types namespace, detail with
    e:ResponseCode, e:Message and t:MessageXml (the BackOffMilliseconds of ErrorServerBusy lives
    there: https://learn.microsoft.com/en-us/exchange/client-developer/exchange-web-services/ews-throttling-in-exchange)."""
    xml_children: list[str] = []
    if exc.violation:
        xml_children.append(element("t:Violation", text=exc.violation))
    xml_children += [element("t:Value", {"Name": name}, text=value) for name, value in exc.values]
    detail = element(
        "detail",
        None,
        element("e:ResponseCode", {"xmlns:e": E}, text=exc.code),
        element("e:Message", {"xmlns:e": E}, text=exc.message),
        element("t:MessageXml", {"xmlns:t": T}, *xml_children) if xml_children else "",
    )
    body = element(
        "s:Fault",
        None,
        element("faultcode", {"xmlns:a": T}, text=f"a:{exc.code}"),
        element("faultstring", {"xml:lang": "en-US"}, text=exc.message),
        detail,
    )
    header = server_version_header(version) if version is not None else ""
    return _envelope(header, body)


@dataclass(frozen=True, slots=True)
class Request:
    """A parsed EWS request: the operation element and what its SOAP header said."""

    operation: str  # local name, e.g. "CreateItem"
    body: ET.Element
    api_version: str | None
    impersonate: str | None  # the SMTP address of ExchangeImpersonation, if any


def text_of(node: ET.Element | None) -> str:
    return (node.text or "").strip() if node is not None else ""
