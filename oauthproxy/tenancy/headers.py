"""Which headers a proxy's configuration may set: never one the gateway owns.

The gateway alone sets `Host`, the forwarding headers and the identity headers under a proxy's
`auth_header_prefix`; the framing and hop-by-hop headers belong to each connection. A configured
header with one of those names would let an owner forge an identity or a client address, or
split a request, so it is refused for every token, the admin's included. Names compare
case-insensitively with `_` read as `-`, because WSGI/CGI backends read `X_Auth_User` as
`X-Auth-User`.
"""

from __future__ import annotations

from collections.abc import Mapping

from oauthproxy.tenancy.caller import Refused

FRAMING = frozenset({"content-length", "transfer-encoding"})
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "te", "trailer", "transfer-encoding", "upgrade"}
)
FORWARDING = frozenset({"forwarded", "x-real-ip"})
HOP_BY_HOP_PREFIX = "proxy-"
FORWARDING_PREFIX = "x-forwarded-"

REQUEST_FORBIDDEN = FRAMING | HOP_BY_HOP | FORWARDING | {"host"}
"""Request headers nobody may configure, besides those under the two prefixes above."""

RESPONSE_FORBIDDEN = FRAMING | HOP_BY_HOP
"""Response headers nobody may configure: they would change how the client reads the body."""


def canonical(name: str) -> str:
    """A header name as it is compared here: lower-case, `_` read as `-`."""
    return name.strip().lower().replace("_", "-")


def check_request_headers(
    headers: Mapping[str, str], *, auth_header_prefix: str, field: str = "custom_headers"
) -> None:
    """Refuse (422) the first configured request header the gateway owns, naming it."""
    identity = canonical(auth_header_prefix)
    for name in headers:
        reason = _request_reason(canonical(name), identity)
        if reason is not None:
            raise _refused(name, reason, field)


def check_response_headers(
    headers: Mapping[str, str], *, field: str = "custom_response_headers"
) -> None:
    """Refuse (422) the first configured response header that frames or is hop-by-hop."""
    for name in headers:
        key = canonical(name)
        if key in RESPONSE_FORBIDDEN or key.startswith(HOP_BY_HOP_PREFIX):
            raise _refused(name, "it frames the response or is hop-by-hop", field)


def _request_reason(key: str, identity_prefix: str) -> str | None:
    if identity_prefix and key.startswith(identity_prefix):
        return f"the gateway sets the identity headers ({identity_prefix}*)"
    if key == "host":
        return "the gateway sets Host"
    if key in FORWARDING or key.startswith(FORWARDING_PREFIX):
        return "the gateway sets the forwarding headers"
    if key in FRAMING:
        return "it frames the request body"
    if key in HOP_BY_HOP or key.startswith(HOP_BY_HOP_PREFIX):
        return "it is a hop-by-hop header"
    return None


def _refused(name: str, reason: str, field: str) -> Refused:
    return Refused(
        422,
        "forbidden_header",
        f"{field}: {name!r} may not be configured: {reason}",
        field=f"{field}.{name}",
    )
