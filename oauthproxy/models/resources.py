"""Protected resources (RFC 9728) registered with the authorization server: `resource:{uri}`."""

from __future__ import annotations

from pydantic import Field

from oauthproxy.models.common import Record


class ProtectedResource(Record):
    uri: str
    name: str = ""
    proxy_target: str | None = None
    scopes: list[str] = Field(default_factory=lambda: ["mcp:read", "mcp:write"])
    metadata_url: str | None = None
