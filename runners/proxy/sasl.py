"""SASL PLAIN and LOGIN as the proxy's listeners receive them (base64 strictly decoded, RFC 4616) and
as the proxy sends them to a backend. Pure; raises only ``SaslError``."""

from __future__ import annotations

import base64
import binascii


class SaslError(ValueError):
    """Malformed SASL data: not base64, or not the mechanism's shape."""


def decode(text: str) -> bytes:
    """Strict base64 (``=`` alone is the empty response)."""
    if text == "=":
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SaslError("invalid base64 data") from None


def plain_credentials(data: bytes) -> tuple[str, str]:
    """``authzid NUL authcid NUL password`` -> (login, password). A different authorization identity
    is refused: the proxy logs users in as themselves."""
    parts = data.split(b"\0")
    if len(parts) != 3 or not parts[1]:
        raise SaslError("not a PLAIN response")
    authzid, authcid, password = (p.decode("utf-8", "surrogateescape") for p in parts)
    if authzid and authzid != authcid:
        raise SaslError("an authorization identity other than the user is not supported")
    return authcid, password


def text_of(data: bytes) -> str:
    return data.decode("utf-8", "surrogateescape")


def plain_response(login: str, password: str) -> bytes:
    """The base64 PLAIN response a backend is sent (no authorization identity)."""
    raw = (
        b"\0" + login.encode("utf-8", "surrogateescape") + b"\0" + password.encode("utf-8", "surrogateescape")
    )
    return base64.b64encode(raw)
