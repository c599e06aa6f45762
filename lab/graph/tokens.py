"""App-only access tokens, and the check of an app's credentials at the token endpoint.

Tokens are JWT-shaped (header.payload.signature, base64url) like Entra ID's v1 access tokens for
Graph (https://learn.microsoft.com/en-us/entra/identity-platform/access-token-claims-reference:
aud, iss, tid, appid, roles, iat, nbf, exp), signed with HMAC-SHA256 under a key that lives only
in this process: a client can read its roles, nobody outside can mint one.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

GRAPH_AUDIENCE = "https://graph.microsoft.com"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True, slots=True)
class TokenClaims:
    """What a valid access token says."""

    app_id: str
    roles: frozenset[str]
    expires: float


class TokenError(Exception):
    """The token is missing, malformed, forged or expired (the server answers 401)."""


class TokenMinter:
    """Issues and checks access tokens; revoke_all() makes every token issued so far invalid."""

    def __init__(self, tenant_id: str) -> None:
        self._key = secrets.token_bytes(32)
        self._tenant_id = tenant_id
        self._lock = threading.Lock()
        self._not_before = 0.0

    def issue(self, app_id: str, roles: frozenset[str], lifetime: float) -> tuple[str, int]:
        """A token for the app and its lifetime in whole seconds (at least 1)."""
        now = time.time()
        claims = {
            "aud": GRAPH_AUDIENCE,
            "iss": f"https://sts.windows.net/{self._tenant_id}/",
            "iat": int(now),
            "nbf": int(now),
            "exp": now + lifetime,
            "appid": app_id,
            "idtyp": "app",
            "roles": sorted(roles),
            "tid": self._tenant_id,
            "ver": "1.0",
            "jti": secrets.token_hex(8),
        }
        header = {"typ": "JWT", "alg": "HS256"}
        signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
        signature = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        return signing_input + "." + b64url(signature), max(1, int(lifetime))

    def check(self, token: str) -> TokenClaims:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("IDX14100: JWT is not well formed, there are no dots (.).")
        signing_input = parts[0] + "." + parts[1]
        expected = hmac.new(self._key, signing_input.encode(), hashlib.sha256).digest()
        try:
            signature = b64url_decode(parts[2])
            claims = json.loads(b64url_decode(parts[1]))
        except (ValueError, UnicodeDecodeError) as exc:
            raise TokenError("Invalid JWT token. The token is malformed.") from exc
        if not hmac.compare_digest(signature, expected):
            raise TokenError("Invalid signature.")
        now = time.time()
        with self._lock:
            revoked_before = self._not_before
        if float(claims["exp"]) <= now or float(claims["iat"]) < revoked_before:
            raise TokenError("Lifetime validation failed, the token is expired.")
        return TokenClaims(str(claims["appid"]), frozenset(claims.get("roles", ())), float(claims["exp"]))

    def revoke_all(self) -> None:
        with self._lock:
            self._not_before = time.time() + 1


class ClientAssertionError(Exception):
    """A client assertion that doesn't prove possession of the app's certificate key."""


def verify_client_assertion(assertion: str, certificate_pem: bytes, client_id: str, audience: str) -> None:
    """Check msal's client assertion (RFC 7523 JWT): signed by the key of the app's certificate,
    issued by and about the app, for this token endpoint, not expired
    (https://learn.microsoft.com/en-us/entra/identity-platform/certificate-credentials)."""
    parts = assertion.split(".")
    if len(parts) != 3:
        raise ClientAssertionError("client_assertion is not a JWT")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
        signature = b64url_decode(parts[2])
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientAssertionError("client_assertion is malformed") from exc
    public_key = x509.load_pem_x509_certificate(certificate_pem).public_key()
    data = (parts[0] + "." + parts[1]).encode()
    alg = header.get("alg")
    try:
        if alg == "RS256" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
        elif alg == "PS256" and isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
                hashes.SHA256(),
            )
        elif alg == "ES256" and isinstance(public_key, ec.EllipticCurvePublicKey):
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

            half = len(signature) // 2
            der = encode_dss_signature(int.from_bytes(signature[:half]), int.from_bytes(signature[half:]))
            public_key.verify(der, data, ec.ECDSA(hashes.SHA256()))
        else:
            raise ClientAssertionError(f"unsupported client_assertion algorithm {alg!r}")
    except InvalidSignature as exc:
        raise ClientAssertionError("client_assertion signature does not verify") from exc
    _check_assertion_claims(claims, client_id, audience)


def _check_assertion_claims(claims: dict[str, Any], client_id: str, audience: str) -> None:
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise ClientAssertionError("client_assertion iss/sub is not the client id")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise ClientAssertionError(f"client_assertion audience {aud!r} is not the token endpoint")
    if float(claims.get("exp", 0)) <= time.time():
        raise ClientAssertionError("client_assertion is expired")
