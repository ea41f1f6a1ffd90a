"""Routes: priority-ordered path rules that send matching requests to another target.

A route's fields are checked where they are declared, so the same rules apply to a request body
and to what Redis holds. A field whose meaning depends on another comes after it (`is_regex`
before `path_pattern`, `target_type` before `target_value`, `scope` before `proxy_hostnames`),
so its validator sees the one it depends on and an error names the field that is wrong.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import datetime
from enum import StrEnum
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from oauthproxy.linear_regex import compile_linear
from oauthproxy.models.common import (
    CONTROL_CHARACTERS,
    HOSTNAME_PATTERN,
    HTTP_METHOD_NAMES,
    HTTP_URI_PATTERN,
    METHOD_PATTERN,
    NAME_PATTERN,
    PORT_NUMBER,
    Hostname,
    Name,
    Omittable,
    OwnerHash,
    Printable,
    Query,
    Record,
    Request,
    utcnow,
)
from oauthproxy.models.proxies import MAX_ENTRIES


class TargetType(StrEnum):
    PORT = "port"
    SERVICE = "service"
    HOSTNAME = "hostname"
    URL = "url"


class RouteScope(StrEnum):
    GLOBAL = "global"
    PROXY = "proxy"


HTTP_METHODS = frozenset(HTTP_METHOD_NAMES)

HttpMethod = Annotated[str, StringConstraints(pattern=METHOD_PATTERN)]

_NAME = TypeAdapter(Name)
_HOSTNAME = TypeAdapter(Hostname)


def _port(value: str) -> str:
    if not value.isdigit() or not 1 <= int(value) <= 65535:
        raise ValueError("a port target is a number from 1 to 65535")
    return str(int(value))


def _is_name(value: str) -> bool:
    try:
        _NAME.validate_python(value)
    except ValidationError:
        return False
    return True


def _service(value: str) -> str:
    if not _is_name(value):
        raise ValueError("a service target is a service name like auth or api-gateway")
    return value


def _hostname(value: str) -> str:
    hostname: str = _HOSTNAME.validate_python(value)
    return hostname


def _url(value: str) -> str:
    try:
        parts = urlsplit(value)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname)
        _ = parts.port  # raises on a port that is not a number in range
    except ValueError:
        valid = False
    if not valid:
        raise ValueError("a url target is an http(s) URL like http://backend:3000")
    return value


PORT_PATTERN = f"^{PORT_NUMBER}$"
TARGET_PATTERNS = {
    TargetType.PORT: PORT_PATTERN,
    TargetType.SERVICE: NAME_PATTERN,
    TargetType.HOSTNAME: HOSTNAME_PATTERN,
    TargetType.URL: HTTP_URI_PATTERN,
}
"""What `target_value` looks like for each `target_type`, for the OpenAPI document (each a
subset of what the checks below accept)."""


_PATH_PREFIX: JsonValue = {"properties": {"path_pattern": {"pattern": "^/"}}}


def _when(field: str, value: JsonValue, then: dict[str, JsonValue], *, given: bool) -> JsonValue:
    """`field` being `value` (or absent, for a default) puts rules on the fields in `then`,
    which must then be given (when `given`)."""
    rule: dict[str, JsonValue] = {"properties": then}
    if given:
        rule["required"] = [*then]
    return {"if": {"properties": {field: {"const": value}}}, "then": rule}


def _route_rules(*, given: bool) -> list[JsonValue]:
    return [
        {"if": {"properties": {"is_regex": {"const": False}}}, "then": _PATH_PREFIX},
        _when("scope", RouteScope.PROXY.value, {"proxy_hostnames": {"minItems": 1}}, given=given),
        *(
            _when("target_type", kind.value, {"target_value": {"pattern": pattern}}, given=given)
            for kind, pattern in TARGET_PATTERNS.items()
        ),
    ]


ROUTE_SCHEMA_RULES = _route_rules(given=True)
"""The rules between fields (`is_regex` → `path_pattern`, `target_type` → `target_value`,
`scope` → `proxy_hostnames`) in JSON Schema, so the document says what the validators check."""
ROUTE_UPDATE_RULES = _route_rules(given=False)
"""The same for an update, which may leave the other field as it is stored."""


TARGET_CHECKS: dict[TargetType, Callable[[str], str]] = {
    TargetType.PORT: _port,
    TargetType.SERVICE: _service,
    TargetType.HOSTNAME: _hostname,
    TargetType.URL: _url,
}


Methods = Annotated[list[HttpMethod], Field(max_length=MAX_ENTRIES)]
ProxyHostnames = Annotated[list[Hostname], Field(max_length=MAX_ENTRIES)]
"""The proxies a route applies to (scope proxy), as a request names them: the route table checks
a route's list for every proxy it is built for."""


class RouteRule(BaseModel):
    """What the creator of a route chooses: shared by `Route` and the create request."""

    model_config = ConfigDict(json_schema_extra={"allOf": ROUTE_SCHEMA_RULES})

    route_id: Name | None = None
    is_regex: bool = False
    path_pattern: str = Field(min_length=1, max_length=1024)
    target_type: TargetType
    target_value: str = Field(min_length=1, max_length=2048)
    priority: int = Field(default=50, ge=0, le=1000, description="Higher is checked first")
    methods: list[HttpMethod] | None = Field(default=None, description="None or [] = any method")
    description: str = Field(default="", max_length=500)
    enabled: bool = True
    scope: RouteScope = RouteScope.GLOBAL
    proxy_hostnames: list[Hostname] = Field(default_factory=list, validate_default=True)

    @field_validator("path_pattern")
    @classmethod
    def _check_path(cls, value: str, info: ValidationInfo) -> str:
        prefix = not info.data.get("is_regex", False)
        if prefix and not value.startswith("/"):
            raise ValueError("a path prefix starts with /")
        stored = issubclass(cls, Record) and info.mode == "json"
        if not stored and CONTROL_CHARACTERS.search(value):  # (no request path holds one)
            raise ValueError("a path pattern holds no control characters")
        if prefix:
            return value
        if stored:
            # A route read back from Redis was checked when it was written: compiling it again
            # here, for every route each time the routes are read, cost every owner's regexes
            # on the event loop at each route change. One stored before today's rules loads
            # all the same (so one old route cannot stop the route table) and matches nothing.
            return value
        compile_linear(value)  # RE2: linear time, or a ValueError naming what it lacks
        return value

    @field_validator("target_value")
    @classmethod
    def _check_target(cls, value: str, info: ValidationInfo) -> str:
        target_type = info.data.get("target_type")
        return TARGET_CHECKS[target_type](value) if target_type else value

    @field_validator("methods")
    @classmethod
    def _check_methods(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        methods = list(dict.fromkeys(method.upper() for method in value))
        unknown = [method for method in methods if method not in HTTP_METHODS]
        if unknown:
            raise ValueError(f"unknown HTTP method {unknown[0]!r}")
        return methods

    @field_validator("proxy_hostnames")
    @classmethod
    def _check_proxy_hostnames(cls, value: list[str], info: ValidationInfo) -> list[str]:
        if info.data.get("scope") == RouteScope.PROXY and not value:
            raise ValueError("a route with scope proxy names at least one proxy hostname")
        return list(dict.fromkeys(value))


class Route(RouteRule, Record):
    """`route:{id}`, indexed by `route:priority:{prio}:{id}` and
    `route:unique:{path}:{prio}[:{owner_token_hash}]` (a pair is unique per owner)."""

    route_id: Name
    owner_token_hash: OwnerHash | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)


class RouteCreate(RouteRule, Request):
    """`POST /api/v1/routes/`: without `route_id`, one is made from the path. Its lists hold
    at most MAX_ENTRIES entries (a stored `Route` keeps what it holds)."""

    methods: Methods | None = Field(default=None, description="None or [] = any method")
    proxy_hostnames: ProxyHostnames = Field(default_factory=list, validate_default=True)
    description: Annotated[str, StringConstraints(max_length=500), Printable] = ""


class RouteUpdate(Request):
    """`PUT /api/v1/routes/{id}`: the fields to change; the changed route is checked as a whole
    (so a change that breaks a rule between fields, as `RouteRule` states them, is a 422)."""

    model_config = ConfigDict(json_schema_extra={"allOf": ROUTE_UPDATE_RULES})

    is_regex: Omittable[bool] = None
    path_pattern: Omittable[Annotated[str, StringConstraints(min_length=1, max_length=1024)]] = None
    target_type: Omittable[TargetType] = None
    target_value: Omittable[Annotated[str, StringConstraints(min_length=1, max_length=2048)]] = None
    priority: Omittable[Annotated[int, Field(ge=0, le=1000)]] = None
    methods: Methods | None = None
    description: Omittable[Annotated[str, StringConstraints(max_length=500), Printable]] = None
    enabled: Omittable[bool] = None
    scope: Omittable[RouteScope] = None
    proxy_hostnames: Omittable[ProxyHostnames] = None


def new_route_id(path_pattern: str) -> str:
    """A readable id made from the path's words and a short random suffix: `api-v1-3f9a2c`."""
    words = re.findall(r"[a-z0-9]+", path_pattern.lower())
    stem = "-".join(words)[:40].strip("-") or "route"
    return f"{stem}-{secrets.token_hex(3)}"


def is_route_id(value: str) -> bool:
    """Whether `value` could be a route's id (and so is safe to look up as `route:{value}`)."""
    return _is_name(value)


class RouteListQuery(Query):
    """`GET /api/v1/routes/?scope=…`: only the routes of that scope."""

    scope: RouteScope | None = None
