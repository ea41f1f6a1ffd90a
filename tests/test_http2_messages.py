"""HTTP/2 header blocks to HTTP/1.1 heads and back, and the flood budgets: pure, row by row."""

from __future__ import annotations

import pytest
from hpack import NeverIndexedHeaderTuple

from oauthproxy.proxy.http import BadRequest
from oauthproxy.proxy.http2.floods import Flood, FloodGuard
from oauthproxy.proxy.http2.messages import request_head, response_fields

GET = [(b":method", b"GET"), (b":scheme", b"https"), (b":path", b"/a?b=c")]


def test_authority_becomes_the_one_host() -> None:
    head = request_head([*GET, (b":authority", b"Example.COM:8443")], ended=True)
    assert (head.method, head.target, head.version) == (b"GET", b"/a?b=c", b"2")
    assert head.headers == [(b"host", b"Example.COM:8443")]
    assert (head.has_body, head.chunked, head.upgrade, head.keep_alive) == (
        False,
        False,
        False,
        True,
    )


def test_a_host_field_alone_names_the_host() -> None:
    head = request_head([*GET, (b"host", b"example.com")], ended=True)
    assert head.header(b"host") == b"example.com"


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ([*GET], "needs :authority"),
        ([*GET, (b":authority", b"a.com"), (b"host", b"b.com")], "different hosts"),
        ([*GET, (b"host", b"a.com"), (b"host", b"a.com")], "only one Host"),
        ([*GET, (b":authority", b"a.com"), (b":authority", b"a.com")], "not allowed"),
        ([*GET, (b":authority", b"a.com"), (b":protocol", b"websocket")], "not allowed"),
        ([(b":method", b"CONNECT"), (b":authority", b"a.com:443")], "CONNECT"),
        (
            [(b":method", b"get"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")],
            "token",
        ),
        (
            [(b":method", b"G.T"), (b":scheme", b"https"), (b":path", b"/"), (b":authority", b"a")],
            "token",
        ),
        ([(b":method", b"GET"), (b":authority", b"a.com")], "needs :path"),
        ([(b":method", b"GET"), (b":path", b"/"), (b":authority", b"a.com")], "needs :scheme"),
        ([*GET, (b"x-a", b"1"), (b":authority", b"a.com")], "not allowed here"),
        ([*GET, (b":status", b"200"), (b":authority", b"a.com")], "not allowed here"),
        ([*GET, (b":authority", b"a.com"), (b"X-A", b"1")], "lowercase HTTP token"),
        ([*GET, (b":authority", b"a.com"), (b"", b"1")], "lowercase HTTP token"),
        ([*GET, (b":authority", b"a.com"), (b"a:b", b"1")], "lowercase HTTP token"),
        ([*GET, (b":authority", b"a.com"), (b"x-a", b"1\r\nx-b: 2")], "CR, LF"),
        ([*GET, (b":authority", b"a.com"), (b"x-a", b"1\x00")], "NUL"),
        ([*GET, (b":authority", b"a.com"), (b"x-a", b"1 ")], "whitespace"),
        ([*GET, (b":authority", b"a.com"), (b"x-a", b"a\x0bb")], "control character"),
        ([*GET, (b":authority", b"a.com"), (b"x-a", b"a\x7f")], "control character"),
        (
            [*GET, (b":authority", b"a.com"), (b"content-length", b"1"), (b"content-length", b"2")],
            "differing Content-Length",
        ),
        ([*GET, (b":authority", b"a.com"), (b"content-length", b"5")], "does not match"),
        ([*GET, (b":authority", b"a.com"), (b"content-length", b"-0")], "does not match"),
        ([*GET, (b":authority", b"a.com\n")], "CR, LF"),
        ([*GET, (b":authority", b"a.com"), (b"connection", b"close")], "connection-specific"),
        ([*GET, (b":authority", b"a.com"), (b"transfer-encoding", b"chunked")], "connection"),
        ([*GET, (b":authority", b"a.com"), (b"te", b"gzip")], "connection-specific"),
    ],
)
def test_what_http11_could_not_carry_is_a_400(
    fields: list[tuple[bytes, bytes]], problem: str
) -> None:
    with pytest.raises(BadRequest, match=problem):
        request_head(fields, ended=True)


def test_connection_specific_fields_never_cross() -> None:
    fields = [*GET, (b":authority", b"a.com"), (b"te", b"trailers"), (b"x-kept", b"1")]
    head = request_head(fields, ended=True)
    assert head.headers == [(b"x-kept", b"1"), (b"host", b"a.com")]
    upstream = [(b"connection", b"close"), (b"transfer-encoding", b"chunked"), (b"x-a", b"1")]
    assert response_fields(200, upstream) == [(b":status", b"200"), (b"x-a", b"1")]


def test_credentials_in_a_response_are_never_indexed() -> None:
    fields = response_fields(200, [(b"set-cookie", b"s=1"), (b"x-a", b"1")])
    assert isinstance(fields[1], NeverIndexedHeaderTuple)
    assert not isinstance(fields[2], NeverIndexedHeaderTuple)


@pytest.mark.parametrize(
    ("length", "ended", "has_body", "chunked"),
    [
        (None, True, False, False),
        (None, False, True, True),  # no length: upstream gets it chunked
        (b"12", False, True, False),
        (b"0", False, True, False),  # its END is still to come (tests/test_security_http2)
    ],
)
def test_how_a_body_is_framed_upstream(
    length: bytes | None, ended: bool, has_body: bool, chunked: bool
) -> None:
    fields = [*GET, (b":authority", b"a.com")]
    if length is not None:
        fields.append((b"content-length", length))
    head = request_head(fields, ended=ended)
    assert (head.has_body, head.chunked) == (has_body, chunked)
    assert (head.header(b"transfer-encoding") == b"chunked") is chunked


def test_a_repeated_content_length_goes_upstream_once() -> None:
    fields = [*GET, (b":authority", b"a.com"), (b"content-length", b"5")]
    head = request_head([*fields, (b"content-length", b"5")], ended=False)
    assert [value for name, value in head.headers if name == b"content-length"] == [b"5"]


def test_cookie_crumbs_are_one_field_again() -> None:
    fields = [*GET, (b":authority", b"a.com"), (b"cookie", b"a=1"), (b"cookie", b"b=2")]
    head = request_head(fields, ended=True)
    assert [v for n, v in head.headers if n == b"cookie"] == [b"a=1; b=2"]


def test_a_flood_budget_counts_per_window() -> None:
    guard = FloodGuard(budgets={Flood.RESETS: 3}, window=10.0)
    assert [guard.over(Flood.RESETS, now) for now in (0, 1, 2)] == [False] * 3
    assert guard.over(Flood.RESETS, 3)  # the fourth within the window
    assert not guard.over(Flood.RESETS, 10.5)  # a new window
    assert guard.detail(Flood.RESETS) == "more than 3 streams reset by the client in 10s"
