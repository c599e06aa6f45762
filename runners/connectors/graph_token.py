"""App-only tokens for Microsoft Graph: msal's client-credentials flow with a secret or a
certificate from the plan's secret references.

One ``TokenSource`` per app and tenant in the process, shared by every mailbox's session: a token
is asked for once, reused by all, and renewed a few minutes before it expires (and at once after a
401). Nothing here ever logs or returns a secret in an error: the client secret, the private key
and each token are registered with ``runners.safe_text`` the moment they are read or received.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

import msal
import requests

from runners.errors import AuthError, ConnectError
from runners.plan.graph_options import DEFAULT_AUTHORITY, GraphOptions
from runners.safe_text import register_secret

SCOPE = "https://graph.microsoft.com/.default"
#: Renew this long before the token expires (Microsoft's app-only tokens live 60-90 minutes), or at
#: half its life for a shorter one.
RENEW_BEFORE = 300.0

_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z ]+)-----\s+(.*?)-----END \1-----", re.S)


@dataclass(frozen=True, slots=True)
class Token:
    value: str
    expires_at: float  # time.monotonic()
    renew_at: float
    #: The application roles the token carries (its ``roles`` claim): route choice and readiness.
    roles: tuple[str, ...] = ()


def roles_of(token: str) -> tuple[str, ...]:
    """The ``roles`` claim of a JWT access token, read without checking its signature (we only
    report what we were given; Graph checks it)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError, binascii.Error):
        return ()
    roles = claims.get("roles", []) if isinstance(claims, dict) else []
    return tuple(sorted(str(r) for r in roles)) if isinstance(roles, list) else ()


class TokenSource:
    """Tokens for one app in one tenant; thread-safe."""

    def __init__(
        self, options: GraphOptions, *, ca_file: str | None, tls_verify: bool, timeout: float
    ) -> None:
        self.options = options
        self.where = options.authority
        self._lock = threading.Lock()
        self._token: Token | None = None
        self._app: msal.ConfidentialClientApplication | None = None
        self._verify: bool | str = (ca_file or True) if tls_verify else False
        self._timeout = timeout

    def _application(self) -> msal.ConfidentialClientApplication:
        if self._app is None:
            custom = self.options.authority_url != DEFAULT_AUTHORITY
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.options.client_id,
                    client_credential=self._credential(),
                    authority=self.options.authority,
                    http_client=_VerifiedSession(self._verify, self._timeout),
                    # An authority Microsoft doesn't know (the lab's emulator) is taken as given:
                    # no instance discovery call to login.microsoftonline.com.
                    validate_authority=not custom,
                    instance_discovery=not custom,
                )
            except ValueError as exc:  # the authority's OpenID configuration could not be read
                raise ConnectError(self.where, "token: OpenID configuration", str(exc)) from None
            except OSError as exc:
                raise ConnectError(self.where, "token: OpenID configuration", str(exc)) from None
        return self._app

    def _credential(self) -> str | dict[str, str]:
        if self.options.client_secret is not None:
            return self.options.client_secret.reveal()
        assert self.options.client_certificate is not None  # the plan loader insists on one
        return certificate_credential(self.options.client_certificate.reveal())

    def token(self, *, fresh: bool = False) -> Token:
        """A token valid for a while yet; ``fresh`` after Graph said 401 to the current one."""
        with self._lock:
            now = time.monotonic()
            if self._token is not None and not fresh and now < self._token.renew_at:
                return self._token
            app = self._application()
            if fresh:
                app.remove_tokens_for_client()
            try:
                result: dict[str, Any] = app.acquire_token_for_client(scopes=[SCOPE])
            except OSError as exc:  # requests' ConnectionError is an OSError
                raise ConnectError(self.where, "token", str(exc)) from None
            if "access_token" not in result:
                # error_description is the identity platform's own words (AADSTS...), never the secret.
                text = f"{result.get('error', 'no token')}: {result.get('error_description', '')}".strip()
                raise AuthError(self.where, "token (client credentials)", text, str(result.get("error")),
                                retryable=False)  # fmt: skip
            value = str(result["access_token"])
            register_secret(value)
            lifetime = float(result.get("expires_in", 3600))
            renew_at = now + max(lifetime - RENEW_BEFORE, lifetime / 2)
            self._token = Token(value, now + lifetime, renew_at, roles_of(value))
            return self._token


class _VerifiedSession(requests.Session):
    """msal's HTTP client, verifying against the plan's CA. requests lets REQUESTS_CA_BUNDLE
    override a session's ``verify`` (psf/requests#3829), so it is given with every request."""

    def __init__(self, verify: bool | str, timeout: float) -> None:
        super().__init__()
        self._verify_with = verify
        self._timeout = timeout

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs["verify"] = self._verify_with
        kwargs.setdefault("timeout", self._timeout)
        return super().request(method, url, *args, **kwargs)


def certificate_credential(pem: str) -> dict[str, str]:
    """msal's certificate credential from one PEM holding the private key and the certificate."""
    blocks = {kind: body for kind, body in _PEM_BLOCK.findall(pem)}
    key_kind = next((k for k in blocks if k.endswith("PRIVATE KEY")), None)
    if key_kind is None or "CERTIFICATE" not in blocks:
        raise AuthError("graph", "token", "client_certificate must hold a PRIVATE KEY and a CERTIFICATE (PEM)",
                        retryable=False)  # fmt: skip
    key = f"-----BEGIN {key_kind}-----\n{blocks[key_kind]}-----END {key_kind}-----\n"
    register_secret(blocks[key_kind].strip())
    der = base64.b64decode("".join(blocks["CERTIFICATE"].split()))
    return {"private_key": key, "thumbprint": hashlib.sha1(der).hexdigest()}  # noqa: S324 - x5t is SHA-1


_SOURCES: dict[tuple[str, str, str], TokenSource] = {}
_SOURCES_LOCK = threading.Lock()


def token_source(
    options: GraphOptions, *, ca_file: str | None, tls_verify: bool, timeout: float
) -> TokenSource:
    """The process's token source for this app and tenant (one per process: tokens are shared)."""
    key = (options.authority, options.client_id, repr(options.client_secret or options.client_certificate))
    with _SOURCES_LOCK:
        source = _SOURCES.get(key)
        if source is None:
            source = _SOURCES[key] = TokenSource(
                options, ca_file=ca_file, tls_verify=tls_verify, timeout=timeout
            )
        return source
