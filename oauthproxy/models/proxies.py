"""Proxy targets: one public hostname forwarded to one backend (`proxy:{hostname}`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import AnyHttpUrl, Field

from oauthproxy.models.common import Hostname, Name, OwnerHash, Record, utcnow


class AuthMode(StrEnum):
    FORWARD = "forward"
    REDIRECT = "redirect"
    PASSTHROUGH = "passthrough"


class RouteMode(StrEnum):
    ALL = "all"
    SELECTIVE = "selective"
    NONE = "none"


class ProxyTarget(Record):
    hostname: Hostname
    target_url: AnyHttpUrl
    cert_name: Name | None = None
    owner_token_hash: OwnerHash | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    enabled: bool = True
    enable_http: bool = True
    enable_https: bool = True
    preserve_host_header: bool = True
    custom_headers: dict[str, str] = Field(default_factory=dict)
    custom_response_headers: dict[str, str] = Field(default_factory=dict)

    auth_enabled: bool = False
    auth_proxy: Hostname | None = None
    auth_mode: AuthMode = AuthMode.FORWARD
    auth_required_users: list[str] | None = None
    auth_required_emails: list[str] | None = None
    auth_required_groups: list[str] | None = None
    auth_allowed_scopes: list[str] | None = None
    auth_allowed_audiences: list[str] | None = None
    auth_pass_headers: bool = True
    auth_cookie_name: str = "unified_auth_token"
    auth_header_prefix: str = "X-Auth-"
    auth_excluded_paths: list[str] | None = None

    route_mode: RouteMode = RouteMode.ALL
    enabled_routes: list[str] = Field(default_factory=list)
    disabled_routes: list[str] = Field(default_factory=list)

    resource_endpoint: str | None = None
    resource_scopes: list[str] | None = None
    resource_stateful: bool = False
    resource_versions: list[str] | None = None
    resource_server_info: dict[str, Any] | None = None
    resource_override_backend: bool = False
    resource_bearer_methods: list[str] | None = None
    resource_documentation_suffix: str | None = None
    resource_custom_metadata: dict[str, Any] | None = None


class ProxyClientInfo(Record):
    """`proxy:client:{server_port}:{client_port}` — the real peer behind a PROXY-protocol hop."""

    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
