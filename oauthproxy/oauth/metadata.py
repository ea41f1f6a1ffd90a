"""The authorization server metadata (RFC 8414), also served as `openid-configuration`."""

from __future__ import annotations

from typing import Any

from oauthproxy.oauth.client_metadata import AUTH_METHODS, GRANT_TYPES
from oauthproxy.oauth.parameters import SUPPORTED_SCOPES
from oauthproxy.oauth.pkce import METHOD
from oauthproxy.settings import Settings


def server_metadata(settings: Settings) -> dict[str, Any]:
    issuer = settings.oauth_issuer_url
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "registration_endpoint": f"{issuer}/register",
        "revocation_endpoint": f"{issuer}/revoke",
        "introspection_endpoint": f"{issuer}/introspect",
        "jwks_uri": f"{issuer}/jwks",
        "scopes_supported": list(SUPPORTED_SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "revocation_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "introspection_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "code_challenge_methods_supported": [METHOD],
        "subject_types_supported": ["public"],
        "resource_indicators_supported": settings.mcp_resource_indicators_enabled,
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
        "mcp_protocol_version": settings.oauth_mcp_protocol_version,
    }
