"""Shared building blocks of the frozen models: base classes, names, timestamps."""

from __future__ import annotations

import functools
import ipaddress
import json
import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic.json_schema import WithJsonSchema


class Record(BaseModel):
    """Something stored in Redis. Unknown fields are ignored so older gateways read newer data."""

    model_config = ConfigDict(frozen=True, extra="ignore")


class Request(BaseModel):
    """A request body. Unknown fields are refused so a typo never passes silently, and a
    boolean or number field takes only that JSON type (pydantic would turn `0` into `false`
    and `false` into `0`, which the OpenAPI document says is refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    json_typed: ClassVar[bool] = True

    @field_validator("*", mode="before")
    @classmethod
    def _json_type(cls, value: Any, info: ValidationInfo) -> Any:
        if not cls.json_typed:
            return value
        kinds = _scalar_kinds(cls).get(info.field_name or "")
        if kinds is not None and not any(_IS_KIND[kind](value) for kind in kinds):
            raise ValueError(f"expected {' or '.join(sorted(kinds))}, not {_json_kind(value)}")
        return value


class Query(Request):
    """A query string: every value arrives as text, which pydantic turns into its type."""

    json_typed: ClassVar[bool] = False


_IS_KIND: dict[str, Callable[[Any], bool]] = {
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: (
        (isinstance(value, int) and not isinstance(value, bool))
        or (isinstance(value, float) and value.is_integer())
    ),  # JSON Schema: 604.0 is an integer
    "number": lambda value: isinstance(value, int | float) and not isinstance(value, bool),
    "null": lambda value: value is None,
}


def _json_kind(value: Any) -> str:
    kinds = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array"}
    return "null" if value is None else kinds.get(type(value), "object")


@functools.cache
def _scalar_kinds(model: type[BaseModel]) -> dict[str, frozenset[str]]:
    """The fields whose JSON Schema allows only booleans, numbers (and null): their types."""
    found = {}
    for name, schema in model.model_json_schema().get("properties", {}).items():
        kinds = frozenset(option.get("type") for option in schema.get("anyOf", [schema]))
        if kinds <= _IS_KIND.keys() and kinds - {"null"}:
            found[name] = kinds
    return found


def utcnow() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
"""C0 controls but tab and newline, DEL, C1 controls, and the bidirectional embeddings,
overrides and isolates: in text people read, a terminal or a browser obeys them (they clear the
screen, forge lines, write the clipboard, reorder what is shown)."""


def _printable(value: str) -> str:
    found = CONTROL_CHARACTERS.search(value)
    if found is not None:
        raise ValueError(
            f"holds the control character U+{ord(found[0]):04X}: only printable text (with "
            "tabs and newlines) is kept"
        )
    return value


Printable = AfterValidator(_printable)
"""For free text from a caller that people read later (descriptions, the names a client gives
itself): no `CONTROL_CHARACTERS`. On request models only: a record stored before the rule
still loads."""


NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
Name = Annotated[str, StringConstraints(pattern=NAME_PATTERN)]
"""A resource name: letters, digits, `_`, `.`, `-`; 1-64 characters; starts alphanumeric."""

EMAIL_PATTERN = r"^[^@\s\x00-\x1f\x7f-\x9f]+@[^@\s\x00-\x1f\x7f-\x9f]+\.[^@\s\x00-\x1f\x7f-\x9f]+$"
Email = Annotated[str, StringConstraints(max_length=254, pattern=EMAIL_PATTERN)]

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME_PATTERN = rf"^{_LABEL}(?:\.{_LABEL})*\.?$"
"""DNS labels of letters, digits and inner hyphens (1-63 characters), dot-separated."""


def _lower_without_dot(value: str) -> str:
    return value.lower().rstrip(".")


Hostname = Annotated[
    str,
    StringConstraints(max_length=254, pattern=HOSTNAME_PATTERN),
    AfterValidator(_lower_without_dot),
]
"""A DNS hostname, stored lower-case without a trailing dot."""

MAX_JSON_DEPTH = 32
"""How deeply free-form JSON an owner stores may nest. pydantic reads a stored record back only
200 levels deep (jiter's limit), so a deeper value, accepted once, made its record unreadable:
and with it every list of its kind (every proxy, for every owner and the data plane)."""


def _json_problem(value: object) -> str | None:
    """Why `value` (as Python's JSON parser made it) could not be stored and read back as JSON
    text, or None. Checked without recursion."""
    pending = [(value, 0)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                return f"nests lists and objects deeper than {MAX_JSON_DEPTH} levels"
            children = [*item, *item.values()] if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)
        elif isinstance(item, str) and not _utf8(item):
            return "holds a lone surrogate (\\ud800-\\udfff), which UTF-8 cannot carry"
        elif isinstance(item, float) and not math.isfinite(item):
            return "holds NaN or Infinity, which JSON does not have"
    return None


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


MAX_JSON_OBJECT_BYTES = 16 * 1024
"""The most JSON text a free-form object may take: a proxy serves its metadata objects in a
document built on every request, on the event loop every tenant shares (1 MiB of them took
13 ms to serialise per request; the base document takes a few µs)."""


def _storable(value: dict[str, Any]) -> dict[str, Any]:
    problem = _json_problem(value)
    if problem is not None:
        raise ValueError(problem)
    if len(json.dumps(value).encode()) > MAX_JSON_OBJECT_BYTES:
        raise ValueError(f"is larger than {MAX_JSON_OBJECT_BYTES} bytes of JSON")
    return value


JsonObject = Annotated[dict[str, Any], AfterValidator(_storable)]
"""A free-form JSON object (metadata an owner publishes), at most `MAX_JSON_DEPTH` deep and
`MAX_JSON_OBJECT_BYTES` long, of JSON text only (no lone surrogates, no NaN or Infinity): what
is stored reads back the same."""

_URL_HOST = r"[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?"
PORT_NUMBER = (
    "(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
)
"""1 to 65535, without leading zeros."""
_URL_REST = rf"(?::{PORT_NUMBER})?(?:[/?][!-\"$-~]*)?$"
HTTP_URI_PATTERN = rf"^[Hh][Tt][Tt][Pp][Ss]?://{_URL_HOST}{_URL_REST}"
"""An absolute http(s) URI: a host, maybe a port, printable ASCII after it and no fragment."""
REDIRECT_URI_PATTERN = (
    rf"^(?:https://{_URL_HOST}|http://(?:localhost|127\.0\.0\.1|\[::1\])){_URL_REST}"
)
"""A redirect URI: https, or http on a loopback host (RFC 8252); no fragment."""

_SCOPE = "(?:mcp:read|mcp:write|mcp:admin)"
SCOPES_PATTERN = rf"^ *{_SCOPE}(?: +{_SCOPE})* *$"
"""A space-separated list of the scopes the authorization server knows (one at least)."""
Scopes = Annotated[str, StringConstraints(max_length=200, pattern=SCOPES_PATTERN)]

HTTP_METHOD_NAMES = ("CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE")
METHOD_PATTERN = (
    "^(?:"
    + "|".join("".join(f"[{c}{c.lower()}]" for c in method) for method in HTTP_METHOD_NAMES)
    + ")$"
)
"""One of the HTTP methods, in any case."""

PATTERN_MEANINGS = {
    METHOD_PATTERN: f"unknown HTTP method: expected one of {', '.join(HTTP_METHOD_NAMES)}",
    NAME_PATTERN: "expected a name of letters, digits, '_', '.' or '-' (1-64 characters, "
    "starting with a letter or digit)",
    HOSTNAME_PATTERN: "expected a DNS hostname like api.example.com",
    EMAIL_PATTERN: "expected an email address like admin@example.com",
    SCOPES_PATTERN: "expected scopes from mcp:read, mcp:write, mcp:admin, separated by spaces",
    HTTP_URI_PATTERN: "expected an absolute http(s) URI like https://mcp.example.com/mcp "
    "(printable ASCII, no fragment)",
    REDIRECT_URI_PATTERN: "expected an https URI (http only on localhost, 127.0.0.1 or [::1]) "
    "without a fragment",
}
"""What each pattern means in words: the API says this instead of the bare pattern."""

OwnerHash = Annotated[str, StringConstraints(pattern=r"^sha256:[0-9a-f]{64}$")]

HttpUri = Annotated[str, StringConstraints(max_length=2048, pattern=HTTP_URI_PATTERN)]
"""An absolute http(s) URI (a resource indicator, a metadata URL)."""

RedirectUri = Annotated[str, StringConstraints(max_length=2000, pattern=REDIRECT_URI_PATTERN)]
"""A redirect URI a client may register."""

SCOPE_NAMES = ("mcp:read", "mcp:write", "mcp:admin")
"""The scopes the authorization server knows."""
ScopeName = Literal["mcp:read", "mcp:write", "mcp:admin"]


def _without_null(schema: dict[str, Any]) -> None:
    """The field's JSON Schema minus its `null` option (and the `null` default)."""
    options = [option for option in schema.pop("anyOf", []) if option.get("type") != "null"]
    if len(options) == 1:
        schema.update(options[0])
    elif options:
        schema["anyOf"] = options
    schema.pop("default", None)


def _not_null(value: Any) -> Any:
    if value is None:
        raise ValueError("leave the field out to keep its value; it cannot be null")
    return value


_T = TypeVar("_T")

Omittable = Annotated[_T | None, Field(json_schema_extra=_without_null), BeforeValidator(_not_null)]
"""A field of a partial update: absent keeps the value, present sets it, and null is refused
(the record has no null for it)."""


IP_ADDRESS_SCHEMA: dict[str, Any] = {
    "anyOf": [{"type": "string", "format": "ipv4"}, {"type": "string", "format": "ipv6"}]
}


def _check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IP address") from None
    return value


IpAddress = Annotated[str, AfterValidator(_check_ip), WithJsonSchema(IP_ADDRESS_SCHEMA)]
"""An IPv4 or IPv6 address, as text."""
