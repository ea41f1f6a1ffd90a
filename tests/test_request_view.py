"""The normalised request view, table by table (pure: no sockets)."""

from __future__ import annotations

import pytest

from oauthproxy.proxy.codec import Head
from oauthproxy.proxy.http import BadRequest
from oauthproxy.proxy.request import RequestView, normalise_path, view_of

V = RequestView


def head(target: bytes, *hosts: bytes, method: bytes = b"GET", version: bytes = b"1.1") -> Head:
    headers = [(b"host", host) for host in hosts]
    return Head([(b"accept", b"*/*"), *headers], version, True, method=method, target=target)


@pytest.mark.parametrize(
    ("path", "normal"),
    [
        ("/", "/"),
        ("/a/b", "/a/b"),
        ("/a/b/", "/a/b/"),
        ("/public/../secret", "/secret"),
        ("/public/%2e%2e/secret", "/secret"),
        ("/public/%2E%2E/secret", "/secret"),
        ("/public/.%2e/secret", "/secret"),
        ("/public/%2e/x", "/public/x"),
        ("/a/./b/../c", "/a/c"),
        ("/a/b/..", "/a/"),
        ("/a/b/.", "/a/b/"),
        ("/..", "/"),
        ("/../../x", "/x"),
        ("//a///b", "/a/b"),
        ("//", "/"),
        ("/a/..b/c.", "/a/..b/c."),
        ("/.well-known/x", "/.well-known/x"),
        ("/%7Euser/%41", "/~user/A"),
        ("/a%2fb", "/a%2Fb"),
        ("/a%2F..%2Fb", "/a%2F..%2Fb"),
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/100%25", "/100%25"),
    ],
)
def test_paths_are_normalised(path: str, normal: str) -> None:
    assert normalise_path(path) == normal


def test_a_plain_path_is_returned_as_it_is() -> None:
    path = "/api/v1/items"
    assert normalise_path(path) is path


@pytest.mark.parametrize("path", ["/a%2", "/a%zz/b", "/a%", "/a\\b", "/a%5c..%5cb\\"])
def test_unreadable_paths_are_a_400(path: str) -> None:
    with pytest.raises(BadRequest):
        normalise_path(path)


@pytest.mark.parametrize(
    ("request_head", "scheme", "expected"),
    [
        (head(b"/x?y=1", b"app.test"), b"http", V("app.test", "app.test", "/x", "?y=1", b"/x?y=1")),
        (head(b"/x", b"APP.Test:80"), b"http", V("app.test", "app.test", "/x", "", b"/x")),
        (head(b"/x", b"app.test.:8080"), b"http", V("app.test", "app.test:8080", "/x", "", b"/x")),
        (head(b"/x", b"app.test:443"), b"https", V("app.test", "app.test", "/x", "", b"/x")),
        (head(b"/x", b"app.test:443"), b"http", V("app.test", "app.test:443", "/x", "", b"/x")),
        (head(b"/x", b"app.test:"), b"http", V("app.test", "app.test", "/x", "", b"/x")),
        (head(b"/x", b"[::1]:8080"), b"http", V("[::1]", "[::1]:8080", "/x", "", b"/x")),
        (head(b"/a/../b?q=/../", b"h"), b"http", V("h", "h", "/b", "?q=/../", b"/b?q=/../")),
        (head(b"/a%2Fb", b"h"), b"http", V("h", "h", "/a%2Fb", "", b"/a%2Fb", True)),
        (head(b"http://A.Test/?q", b"a.test"), b"http", V("a.test", "a.test", "/", "?q", b"/?q")),
        (head(b"http://a.test:80", b"a.test"), b"http", V("a.test", "a.test", "/", "", b"/")),
        (head(b"HTTPS://a.test:443/p", b"a.test"), b"http", V("a.test", "a.test", "/p", "", b"/p")),
        (head(b"http://a.test/p", version=b"1.0"), b"http", V("a.test", "a.test", "/p", "", b"/p")),
        (head(b"*", b"h", method=b"OPTIONS"), b"http", V("h", "h", "*", "", b"*")),
        (head(b"/x", version=b"1.0"), b"http", V("", "", "/x", "", b"/x")),
    ],
)  # fmt: skip
def test_views(request_head: Head, scheme: bytes, expected: RequestView) -> None:
    assert view_of(request_head, scheme)._replace(headers=[]) == expected


def test_an_http_1_0_absolute_target_without_host_gives_the_backend_its_host() -> None:
    """The headers the backend is sent carry the one Host the request was routed by (a
    proxy that preserves Host, and X-Forwarded-Host, read it there)."""
    view = view_of(head(b"http://app.test/p", version=b"1.0"), b"http")
    assert [value for name, value in view.headers if name == b"host"] == [b"app.test"]


@pytest.mark.parametrize(
    "request_head",
    [
        pytest.param(head(b"/x", b"a.test", b"a.test"), id="two-hosts-same"),
        pytest.param(head(b"/x", b"a.test", b"b.test"), id="two-hosts"),
        pytest.param(head(b"/x"), id="no-host-1.1"),
        pytest.param(head(b"http://a.test/x"), id="absolute-no-host-1.1"),  # RFC 9112 §3.2
        pytest.param(head(b"/x", b""), id="empty-host"),
        pytest.param(head(b"/x", b"a test"), id="space"),
        pytest.param(head(b"/x", b"a/b"), id="slash"),
        pytest.param(head(b"/x", b"user@a.test"), id="userinfo"),
        pytest.param(head(b"/x", b"a.test:99999"), id="port-range"),
        pytest.param(head(b"/x", b"a.test:8x"), id="port-letters"),
        pytest.param(head(b"/x", b"[::1"), id="open-bracket"),
        pytest.param(head(b"/x", b"[::1]x"), id="after-bracket"),
        pytest.param(head(b"http://b.test/x", b"a.test"), id="absolute-other-host"),
        pytest.param(head(b"http://a.test:8080/x", b"a.test"), id="absolute-other-port"),
        pytest.param(head(b"http://x@a.test/x", b"a.test"), id="absolute-userinfo"),
        pytest.param(head(b"ftp://a.test/x", b"a.test"), id="absolute-other-scheme"),
        pytest.param(head(b"a.test:443", b"a.test", method=b"CONNECT"), id="authority-form"),
        pytest.param(head(b"*", b"a.test"), id="asterisk-not-options"),
        pytest.param(head(b"/a/b\\..\\c", b"a.test"), id="backslash"),
    ],
)
def test_refused_views(request_head: Head) -> None:
    with pytest.raises(BadRequest) as refused:
        view_of(request_head, b"http")
    assert refused.value.status == 400
