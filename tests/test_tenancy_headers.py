"""Configured headers: never one the gateway owns, whatever its spelling, for any token."""

from __future__ import annotations

import pytest

from oauthproxy.tenancy.caller import Refused
from oauthproxy.tenancy.headers import check_request_headers, check_response_headers

REFUSED_REQUEST_HEADERS = [
    "Host",
    "HOST",
    "X-Forwarded-For",
    "x-forwarded-proto",
    "X-Forwarded-Host",
    "X_Forwarded_For",
    "X-Forwarded-Anything",
    "X-Real-IP",
    "x_real_ip",
    "Forwarded",
    "Connection",
    "Keep-Alive",
    "Proxy-Authorization",
    "Proxy-Connection",
    "proxy_anything",
    "TE",
    "Trailer",
    "Transfer-Encoding",
    "Upgrade",
    "Content-Length",
    "content_length",
    "X-Auth-User",
    "x-auth-email",
    "X_Auth_User_Name",
    "X-AUTH-",
]

ALLOWED_REQUEST_HEADERS = [
    "X-Custom",
    "X-Api-Key",
    "Authorization",
    "X-Authenticated",  # not under the prefix X-Auth- (no dash after Auth)
    "X-Forwarding-Note",
    "Hostname",
    "Content-Type",
]


@pytest.mark.parametrize("name", REFUSED_REQUEST_HEADERS)
def test_a_header_the_gateway_owns_is_refused_naming_it(name: str) -> None:
    with pytest.raises(Refused) as refused:
        check_request_headers({"X-Fine": "1", name: "v"}, auth_header_prefix="X-Auth-")
    assert (refused.value.status, refused.value.error) == (422, "forbidden_header")
    assert refused.value.field == f"custom_headers.{name}"
    assert repr(name) in refused.value.detail


@pytest.mark.parametrize("name", ALLOWED_REQUEST_HEADERS)
def test_other_headers_pass(name: str) -> None:
    check_request_headers({name: "v"}, auth_header_prefix="X-Auth-")


@pytest.mark.parametrize(
    ("prefix", "name", "refused"),
    [
        ("X-User-", "X-User-Id", True),
        ("X-User-", "x_user_id", True),
        ("X-User-", "X-Auth-User", False),
        ("X_Ident_", "X-Ident-Name", True),
        ("", "X-Anything", False),
    ],
)
def test_the_identity_prefix_is_the_proxys(prefix: str, name: str, refused: bool) -> None:
    if refused:
        with pytest.raises(Refused):
            check_request_headers({name: "v"}, auth_header_prefix=prefix)
    else:
        check_request_headers({name: "v"}, auth_header_prefix=prefix)


@pytest.mark.parametrize(
    ("name", "refused"),
    [
        ("Content-Length", True),
        ("Transfer-Encoding", True),
        ("Connection", True),
        ("Upgrade", True),
        ("proxy-authenticate", True),
        ("X-Frame-Options", False),
        ("Strict-Transport-Security", False),
        ("X-HackerOne-Research", False),
    ],
)
def test_response_headers_may_not_frame_or_be_hop_by_hop(name: str, refused: bool) -> None:
    if not refused:
        check_response_headers({name: "v"})
        return
    with pytest.raises(Refused) as caught:
        check_response_headers({name: "v"})
    assert (caught.value.status, caught.value.field) == (422, f"custom_response_headers.{name}")
