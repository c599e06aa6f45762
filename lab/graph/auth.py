"""The identity platform's two endpoints msal uses for an app-only token with a custom authority
(msal's ConfidentialClientApplication with instance_discovery=False):

GET  /{tenant}/v2.0/.well-known/openid-configuration
     (https://learn.microsoft.com/en-us/entra/identity-platform/v2-protocols-oidc#find-your-apps-openid-configuration-document-uri)
POST /{tenant}/oauth2/v2.0/token, grant_type=client_credentials, scope .../.default, with a
     client_secret or a client_assertion (https://learn.microsoft.com/en-us/entra/identity-platform/v2-oauth2-client-creds-grant-flow).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any
from urllib.parse import parse_qs

from lab.graph.context import Reply, Tenant
from lab.graph.tokens import ClientAssertionError, verify_client_assertion

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


def openid_configuration(tenant: Tenant, base_url: str) -> Reply:
    issuer = f"{base_url}/{tenant.config.tenant_id}/v2.0"
    prefix = f"{base_url}/{tenant.config.tenant_id}"
    return Reply(
        200,
        {
            "token_endpoint": f"{prefix}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{prefix}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": issuer,
            "request_uri_parameter_supported": False,
            "userinfo_endpoint": f"{base_url}/oidc/userinfo",
            "authorization_endpoint": f"{prefix}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{prefix}/oauth2/v2.0/devicecode",
            "http_logout_supported": True,
            "frontchannel_logout_supported": True,
            "end_session_endpoint": f"{prefix}/oauth2/v2.0/logout",
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nbf", "tid", "ver"],
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
        },
    )


def oauth_error(status: int, error: str, code: int, description: str) -> Reply:
    """The identity platform's error body (error, error_description with the AADSTS code, error_codes)."""
    body: dict[str, Any] = {
        "error": error,
        "error_description": f"AADSTS{code}: {description}",
        "error_codes": [code],
        "timestamp": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ"),
        "trace_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
    }
    return Reply(status, body)


def token(tenant: Tenant, body: bytes, token_endpoint: str) -> Reply:
    form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True).items()}
    if form.get("grant_type") != "client_credentials":
        return oauth_error(
            400, "unsupported_grant_type", 70003, "The app requested an unsupported grant type."
        )
    app = tenant.config.app(form.get("client_id", ""))
    if app is None:
        return oauth_error(
            400,
            "unauthorized_client",
            700016,
            f"Application with identifier '{form.get('client_id', '')}' was not found in the directory.",
        )
    scopes = set(form.get("scope", "").split()) - _RESERVED_SCOPES
    if scopes != {"https://graph.microsoft.com/.default"}:
        return oauth_error(
            400,
            "invalid_scope",
            1002012,
            "The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).",
        )
    if "client_secret" in form:
        if app.secret is None or form["client_secret"] != app.secret:
            return oauth_error(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID.",
            )
    elif form.get("client_assertion_type") == ASSERTION_TYPE and "client_assertion" in form:
        if app.certificate_pem is None:
            return oauth_error(
                401,
                "invalid_client",
                700027,
                "The certificate with identifier used to sign the client assertion is not registered on application.",
            )
        try:
            verify_client_assertion(
                form["client_assertion"], app.certificate_pem, app.client_id, token_endpoint
            )
        except ClientAssertionError as exc:
            return oauth_error(
                401, "invalid_client", 700027, f"Client assertion failed signature validation. ({exc})"
            )
    else:
        return oauth_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        )
    access_token, lifetime = tenant.minter.issue(app.client_id, app.roles, tenant.config.token_lifetime)
    return Reply(
        200,
        {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": access_token,
        },
        headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
    )
