"""Proxy targets: one public hostname forwarded to one backend (`proxy:{hostname}`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AliasChoices,
    AliasGenerator,
    AnyHttpUrl,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
)
from pydantic.json_schema import WithJsonSchema

from oauthproxy.models.common import (
    Email,
    Hostname,
    JsonObject,
    Name,
    Omittable,
    OwnerHash,
    Query,
    Record,
    Request,
    utcnow,
)

MCP_PROTOCOL_VERSION = "2025-06-18"
HACKERONE_HEADER = "X-HackerOne-Research"


class AuthMode(StrEnum):
    FORWARD = "forward"
    REDIRECT = "redirect"
    PASSTHROUGH = "passthrough"


class RouteMode(StrEnum):
    ALL = "all"
    SELECTIVE = "selective"
    NONE = "none"


HEADER_NAME_PATTERN = r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$"
HEADER_VALUE_PATTERN = r"^[^\x00-\x08\x0a-\x1f\x7f]*$"

HeaderName = Annotated[str, StringConstraints(pattern=HEADER_NAME_PATTERN, max_length=256)]
"""An HTTP field name (RFC 9110 token)."""

HeaderValue = Annotated[
    str,
    StringConstraints(strip_whitespace=True, pattern=HEADER_VALUE_PATTERN, max_length=8192),
]
"""An HTTP field value: no control characters (so no line breaks: a configured header cannot
inject another one), no leading or trailing whitespace."""

GATEWAY_METADATA = frozenset({"resource", "authorization_servers", "jwks_uri"})
"""What a proxy's protected-resource metadata says that its owner cannot change: the resource
is the proxy's own origin, its authorization server the gateway's."""

MAX_ENTRIES = 100
"""Most headers a proxy may configure, and most entries of each of its auth and metadata lists:
the data plane goes through them on every request (an excluded path is a prefix test, an email
pattern an fnmatch), for every tenant on one event loop, so an owner must not make them long."""

HEADER_MAP_SCHEMA = {
    "type": "object",
    "propertyNames": {"pattern": HEADER_NAME_PATTERN, "maxLength": 256},
    "additionalProperties": {"type": "string", "pattern": HEADER_VALUE_PATTERN, "maxLength": 8192},
}

HeaderMap = Annotated[dict[HeaderName, HeaderValue], WithJsonSchema(HEADER_MAP_SCHEMA)]
"""Header names to values (pydantic alone would document the names as `patternProperties`,
which lets any other name through)."""

MAX_HEADER_BYTES = 16384
"""The most bytes (names and values) the headers of one map a request configures may hold: they
go out with every request or response of the proxy (100 values of 8 KiB made an 800 KB head,
and HPACK-coding it over HTTP/2 cost 0.8 s of the event loop per response)."""


def _bounded_headers(headers: dict[str, str]) -> dict[str, str]:
    size = sum(len(name) + len(value) for name, value in headers.items())
    if size > MAX_HEADER_BYTES:
        raise ValueError(f"the headers hold {size} bytes together, at most {MAX_HEADER_BYTES}")
    return headers


ConfiguredHeaders = Annotated[
    dict[HeaderName, HeaderValue],
    Field(max_length=MAX_ENTRIES),
    AfterValidator(_bounded_headers),
    WithJsonSchema({**HEADER_MAP_SCHEMA, "maxProperties": MAX_ENTRIES}),
]
"""Headers a request configures: at most MAX_ENTRIES, MAX_HEADER_BYTES together (stored records
keep what they hold)."""


DEFAULT_HEADER_PREFIX = "X-Auth-"
"""Where a protected proxy's identity headers go unless its owner moves them."""


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
    https_redirect: bool = False
    """Answer plain-HTTP requests with a redirect to HTTPS once a certificate serves the host
    (ACME challenges are never redirected)."""
    preserve_host_header: bool = True
    custom_headers: HeaderMap = Field(default_factory=dict)
    custom_response_headers: HeaderMap = Field(default_factory=dict)

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
    auth_header_prefix: str = DEFAULT_HEADER_PREFIX
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


# --- request bodies of the proxy API -------------------------------------------------------------


UrlPath = Annotated[str, StringConstraints(pattern=r"^/\S*$", max_length=1024)]

LABEL_PATTERN = r"^[!#-\[\]-~]+$"
"""Visible ASCII but a quote or a backslash: a label may go into a quoted string of a header
the gateway writes (a scope into the 401's `WWW-Authenticate`), and a line break there was sent
as it was over HTTP/2 (header injection behind any HTTP/2-to-1 intermediary)."""

Label = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=LABEL_PATTERN)]
"""A user name, email pattern, group, scope or audience in an auth allowlist."""

Labels = Annotated[list[Label], Field(max_length=MAX_ENTRIES)]
UrlPaths = Annotated[list[UrlPath], Field(max_length=MAX_ENTRIES)]
RouteNames = Annotated[list[Name], Field(max_length=MAX_ENTRIES)]
"""Routes a proxy selects or leaves out (`route_mode`): the route table is rebuilt from them for
every proxy whenever a route or a proxy changes."""


class ProxyTargetCreate(Request):
    hostname: Hostname
    target_url: AnyHttpUrl = Field(description="The backend: an http:// or https:// URL")
    cert_name: Name | None = None
    enable_http: bool = True
    enable_https: bool = True
    https_redirect: bool = False
    preserve_host_header: bool = True
    custom_headers: ConfiguredHeaders = Field(default_factory=dict)
    custom_response_headers: ConfiguredHeaders = Field(default_factory=dict)
    cert_email: Email | None = Field(
        default=None,
        description="ACME account email for the certificate ordered when HTTPS is on and "
        "no cert_name is given (default: the token's cert_email, else ADMIN_EMAIL)",
    )
    staging: bool = Field(default=False, description="Order that certificate from ACME_STAGING_URL")

    def target(self, *, owner_token_hash: str, created_by: str) -> ProxyTarget:
        fields = self.model_dump(exclude={"cert_email", "staging"})
        return ProxyTarget(**fields, owner_token_hash=owner_token_hash, created_by=created_by)


class ProxyTargetUpdate(Request):
    """A partial update: only the fields present change."""

    target_url: Omittable[AnyHttpUrl] = None
    cert_name: Name | None = None
    enabled: Omittable[bool] = None
    enable_http: Omittable[bool] = None
    enable_https: Omittable[bool] = None
    https_redirect: Omittable[bool] = None
    preserve_host_header: Omittable[bool] = None
    custom_headers: Omittable[ConfiguredHeaders] = None
    custom_response_headers: Omittable[ConfiguredHeaders] = None


class ProxyAuthConfig(Request):
    """Auth settings to change; auth is enabled by the same request. Absent fields keep their
    value; `auth_required_users: null` means the global default (OAUTH_ALLOWED_GITHUB_USERS)."""

    auth_proxy: Hostname | None = None
    auth_mode: Omittable[AuthMode] = None
    auth_required_users: Labels | None = None
    auth_required_emails: Labels | None = None
    auth_required_groups: Labels | None = None
    auth_allowed_scopes: Labels | None = None
    auth_allowed_audiences: Labels | None = None
    auth_pass_headers: Omittable[bool] = None
    auth_cookie_name: Omittable[HeaderName] = None
    auth_header_prefix: Omittable[HeaderName] = None
    auth_excluded_paths: UrlPaths | None = None


class BearerMethod(StrEnum):
    """How a resource accepts bearer tokens (RFC 9728 `bearer_methods_supported`)."""

    HEADER = "header"
    BODY = "body"
    QUERY = "query"


def _also_mcp(name: str) -> AliasChoices:
    """`resource_endpoint` may also be sent as the spec's `mcp_endpoint`, and so on."""
    return AliasChoices(name, name.replace("resource_", "mcp_", 1))


class ProxyResourceConfig(Request):
    """Protected resource metadata (RFC 9728) for a proxy: replaces all of it at once.

    Each `resource_*` field is also accepted under its `mcp_*` name. `mcp_enabled: false` clears
    the metadata, like DELETE.
    """

    model_config = ConfigDict(alias_generator=AliasGenerator(validation_alias=_also_mcp))

    mcp_enabled: bool = True
    resource_endpoint: UrlPath = "/mcp"
    resource_scopes: Labels = Field(default_factory=lambda: ["mcp:read", "mcp:write"])
    resource_stateful: bool = False
    resource_versions: Labels = Field(default_factory=lambda: [MCP_PROTOCOL_VERSION])
    resource_server_info: JsonObject | None = None
    resource_override_backend: bool = False
    resource_bearer_methods: list[BearerMethod] = Field(
        default_factory=lambda: [BearerMethod.HEADER], max_length=MAX_ENTRIES
    )
    resource_documentation_suffix: UrlPath | None = "/docs"
    resource_custom_metadata: JsonObject | None = None
    hacker_one_research_header: HeaderValue | None = Field(
        default=None, description="Also send `X-HackerOne-Research: <value>` on every response"
    )

    @field_validator("resource_custom_metadata")
    @classmethod
    def _adds_only(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """Custom metadata adds fields; it never names the resource, its authorization server
        or its keys (another owner's resource, a server of the owner's choosing)."""
        taken = sorted(set(value or {}) & GATEWAY_METADATA)
        if taken:
            raise ValueError(f"{taken[0]!r} is the gateway's to say, not custom metadata")
        return value

    def apply(self, target: ProxyTarget) -> ProxyTarget:
        if not self.mcp_enabled:
            return reset(target, RESOURCE_FIELDS)
        changes: dict[str, Any] = self.model_dump(mode="json", include=set(RESOURCE_FIELDS))
        if self.hacker_one_research_header is not None:
            headers = {**target.custom_response_headers}
            headers[HACKERONE_HEADER] = self.hacker_one_research_header
            changes["custom_response_headers"] = headers
        return target.model_copy(update=changes)


class ProxyRouteSettings(Request):
    """Which routes apply to a proxy; absent fields keep their value."""

    route_mode: Omittable[RouteMode] = None
    enabled_routes: Omittable[RouteNames] = None
    disabled_routes: Omittable[RouteNames] = None


class ProxyDeleteQuery(Query):
    delete_certificate: bool = Field(
        default=False, description="Also delete the proxy's certificate, if the caller owns it"
    )


class ProxyDeleted(Record):
    hostname: str
    deleted_certificate: str | None = None


# --- the sections of a proxy that the sub-resources show and reset ----------------------------

AUTH_FIELDS = tuple(name for name in ProxyTarget.model_fields if name.startswith("auth_"))
RESOURCE_FIELDS = tuple(name for name in ProxyTarget.model_fields if name.startswith("resource_"))
ROUTE_FIELDS = ("route_mode", "enabled_routes", "disabled_routes")


def section(target: ProxyTarget, fields: tuple[str, ...]) -> dict[str, Any]:
    """The named fields of `target` as JSON values."""
    return target.model_dump(mode="json", include=set(fields))


def reset(target: ProxyTarget, fields: tuple[str, ...]) -> ProxyTarget:
    """`target` with the named fields back at their defaults."""
    defaults = {
        name: ProxyTarget.model_fields[name].get_default(call_default_factory=True)
        for name in fields
    }
    return target.model_copy(update=defaults)
