"""Client metadata (RFC 7591 section 2): validated the same way whether it arrives at `/register`
or in a Client ID Metadata Document."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from oauthproxy.models.common import Printable
from oauthproxy.models.oauth import ClientOrigin, OAuthClient
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.parameters import DEFAULT_CLIENT_SCOPE, scope_list, unsupported_scopes
from oauthproxy.oauth.redirect_uris import registration_problem

GRANT_TYPES = ("authorization_code", "refresh_token")
PUBLIC = "none"
"""The token_endpoint_auth_method of a public client (no secret)."""
AUTH_METHODS = ("client_secret_basic", "client_secret_post", PUBLIC)
MAX_REDIRECT_URIS = 20
MAX_METADATA_BYTES = 8192
"""What one client's metadata may hold, together: anyone may register one, and it is kept for
OAUTH_CLIENT_LIFETIME (90 days) whether used or not; each field's bound alone let a
registration keep 62 KB (20 registrations a minute per address: ~1.7 GiB a day)."""

Text = Annotated[str, StringConstraints(max_length=2000), Printable]
Name = Annotated[str, StringConstraints(max_length=200), Printable]


class ClientMetadata(BaseModel):
    """What a client says about itself; members the server does not know are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    redirect_uris: list[Text] = Field(default_factory=list, max_length=MAX_REDIRECT_URIS)
    client_name: Name = ""
    client_uri: Text | None = None
    logo_uri: Text | None = None
    tos_uri: Text | None = None
    policy_uri: Text | None = None
    contacts: list[Text] = Field(default_factory=list, max_length=10)
    software_id: Name | None = None
    software_version: Name | None = None
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code"])
    response_types: list[str] = Field(default_factory=lambda: ["code"])
    token_endpoint_auth_method: str = "client_secret_basic"  # noqa: S105 - a method name
    scope: Text | None = None

    def client(self, client_id: str, origin: ClientOrigin, **record: Any) -> OAuthClient:
        """The stored client for this metadata."""
        fields = self.model_dump(exclude={"tos_uri", "policy_uri", "scope"})
        return OAuthClient(
            **fields,
            client_id=client_id,
            scope=self.scope or DEFAULT_CLIENT_SCOPE,
            origin=origin,
            **record,
        )


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client_metadata", description)


def _check(metadata: ClientMetadata) -> None:
    size = len(metadata.model_dump_json())
    if size > MAX_METADATA_BYTES:
        raise _invalid(f"the metadata holds {size} bytes, at most {MAX_METADATA_BYTES}")
    if not metadata.redirect_uris:
        raise OAuthError("invalid_redirect_uri", "redirect_uris must name at least one URI")
    for uri in metadata.redirect_uris:
        problem = registration_problem(uri)
        if problem is not None:
            raise OAuthError("invalid_redirect_uri", problem)
    if unknown := [grant for grant in metadata.grant_types if grant not in GRANT_TYPES]:
        raise _invalid(f"unsupported grant_types: {' '.join(unknown)}")
    if "authorization_code" not in metadata.grant_types:
        raise _invalid("grant_types must include authorization_code")
    if metadata.response_types != ["code"]:
        raise _invalid('response_types must be ["code"]')
    if metadata.token_endpoint_auth_method not in AUTH_METHODS:
        raise _invalid(f"token_endpoint_auth_method must be one of {', '.join(AUTH_METHODS)}")
    if unknown := unsupported_scopes(scope_list(metadata.scope)):
        raise _invalid(f"unsupported scope: {' '.join(unknown)}")


def parse_metadata(body: Any, **defaults: Any) -> ClientMetadata:
    """Validate client metadata (a decoded JSON object); `defaults` fill members left out."""
    if not isinstance(body, dict):
        raise _invalid("the client metadata must be a JSON object")
    try:
        given = {name: value for name, value in body.items() if value is not None}
        metadata = ClientMetadata.model_validate({**defaults, **given})
    except ValidationError as error:
        problem = error.errors()[0]
        where = ".".join(str(part) for part in problem["loc"]) or "body"
        raise _invalid(f"{where}: {problem['msg']}") from None
    _check(metadata)
    return metadata
