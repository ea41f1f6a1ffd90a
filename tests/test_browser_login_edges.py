"""The redirect-mode login's edges, on the wire: the page a browser returns to after the login is
a path on the proxy's own origin, never another site; a login finishes only in the browser that
started it."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.login import GATEWAY_CLIENT_ID, RETURN_MAX, BrowserLogin, return_path
from oauthproxy.proxy.protect import without_cookie
from oauthproxy.serve import Ready
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.eventually import eventually
from tests.test_browser_login import APP, Browser, site, until_protected

github = oauth_helpers.github
__all__ = ["site"]


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("/", "/"),
        ("/echo?x=1", "/echo?x=1"),
        ("/a//b", "/a//b"),
        ("/%2F%2Fevil.example", "/%2F%2Fevil.example"),
        ("/x?next=//evil.example", "/x?next=//evil.example"),
        ("//evil.example/x", None),
        ("///evil.example/x", None),
        ("/\\evil.example/x", None),
        ("\\\\evil.example/x", None),
        ("/x\\y", None),
        ("http://evil.example/x", None),
        ("https:evil.example", None),
        ("javascript:alert(1)", None),
        ("evil.example/x", None),
        ("", None),
        ("*", None),
        ("/\t/evil.example", None),
        ("/\n/evil.example", None),
        ("/ /evil.example", None),
        ("/\x7f", None),
        ("/caf\xe9", None),
    ],
)
def test_only_a_path_on_the_same_origin_is_a_return_address(
    target: str, expected: str | None
) -> None:
    assert return_path(target) == expected


async def raw_get(port: int, target: bytes, host: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request with `target` sent byte for byte (no client library rewrites it)."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Accept: text/html, application/json\r\nConnection: close\r\n\r\n"
        )
        received = b""
        with trio.fail_after(10):
            while chunk := await stream.receive_some():
                received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize(
    "target",
    [b"/\\evil.example/x", b"http://evil.example/x"],
    ids=["backslash", "absolute-form-other-host"],
)
async def test_a_login_never_starts_for_another_sites_address(
    site: Ready, storage: Storage, target: bytes
) -> None:
    """Refused before the login (and its Redis record) starts: a raw backslash is refused by the
    request view everywhere, an absolute-form target naming another host disagrees with Host."""
    await until_protected(site)
    host = f"{APP}:{site.http_port}".encode()
    status, headers, body = await raw_get(site.http_port, target, host)
    assert status == 400, (status, headers.get(b"location"))
    assert b"location" not in headers
    assert json.loads(body)["error"] in ("bad_request", "invalid_return_address")
    assert not await storage.redis.keys("oauth:proxy_login:*")


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "///evil.example/x"], ids=["double-slash", "triple-slash"]
)
async def test_repeated_slashes_return_to_a_path_on_the_proxy(site: Ready, target: str) -> None:
    """The request view merges repeated slashes before the login sees the target, so
    `//evil.example/x` is the proxy's own `/evil.example/x`: the login ends there, never at
    evil.example (before, the callback answered `Location: //evil.example/x`)."""
    await until_protected(site)
    _, visited = await new_browser(site).visit(f"http://{APP}:{site.http_port}{target}")
    assert not [url for url in visited[1:] if urlsplit(url).hostname == "evil.example"], visited
    assert visited[-1] == f"http://{APP}:{site.http_port}/evil.example/x", visited


async def test_an_anonymous_login_start_keeps_a_bounded_record(
    site: Ready, storage: Storage
) -> None:
    """Anyone may start a login with a 63 KiB query (the head's limit is 64 KiB), and the login
    kept the whole target as its return address in Redis for ten minutes: ~64 KiB per start,
    bounded only by the anonymous rate limit per client (an IPv6 client per /64), in the Redis
    every tenant's state lives in. A return address longer than RETURN_MAX is refused before
    anything is stored, and one of RETURN_MAX still starts a login."""
    await until_protected(site)
    host = f"{APP}:{site.http_port}".encode()
    status, _, body = await raw_get(site.http_port, b"/echo?" + b"a" * (63 * 1024), host)
    assert (status, json.loads(body)["error"]) == (414, "return_address_too_long")
    assert not await storage.redis.keys("oauth:proxy_login:*")
    longest = b"/echo?" + b"a" * (RETURN_MAX - len(b"/echo?"))
    status, headers, _ = await raw_get(site.http_port, longest, host)
    assert status == 302, headers
    [record] = await storage.redis.keys("oauth:proxy_login:*")
    assert await storage.redis.strlen(record) < RETURN_MAX + 1024


async def test_a_path_on_the_proxy_still_starts_a_login(site: Ready) -> None:
    await until_protected(site)
    host = f"{APP}:{site.http_port}".encode()
    status, headers, _ = await raw_get(site.http_port, b"/a//b?next=//evil.example", host)
    assert status == 302
    assert headers[b"location"].startswith(b"http://localhost:")


def new_browser(site: Ready) -> Browser:
    client = httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))
    return Browser(client, site.http_port)


async def until_the_proxys_callback(browser: Browser, url: str) -> str:
    """Follow the login from `url` up to (not into) the proxy's callback; its URL."""
    response = await browser.get(url)
    while urlsplit(url).path != "/.oauthproxy/callback":
        assert response.status_code in (302, 303), response.text
        url = str(httpx.URL(url).join(response.headers["location"]))
        if urlsplit(url).path != "/.oauthproxy/callback":
            response = await browser.get(url)
    return url


async def test_the_proxys_callback_in_another_browser_is_refused(site: Ready) -> None:
    """A victim who opens an attacker's callback URL is not logged in as the attacker."""
    await until_protected(site)
    attacker, victim = new_browser(site), new_browser(site)
    callback = await until_the_proxys_callback(attacker, f"http://{APP}:{site.http_port}/echo")
    refused = await victim.get(callback)
    assert refused.status_code == 403, refused.text
    assert "unified_auth_token" not in victim.cookies.get(APP, {})
    page, _ = await attacker.visit(callback)  # the browser that started it still can
    assert page.status_code == 200
    assert page.json()["headers"]["x-auth-user-name"] == "alice"
    bindings = {k: v for k, v in attacker.cookies[APP].items() if k.startswith("oauthproxy_login_")}
    assert list(bindings.values()) == [""]  # the binding cookie is cleared once used


async def test_over_https_the_proxys_login_cookies_are_host_only(storage: Storage) -> None:
    """Cookie tossing on a proxied host: a sibling (mallory.example.com) may set a cookie for
    example.com, so a redirect-mode proxy at app.example.com read a planted login binding (and
    token cookie) whoever set it. Over HTTPS they are `__Host-` cookies, and the old name
    counts for nothing: the callback is refused before any code is exchanged."""
    login = BrowserLogin("http://127.0.0.1:9", storage.proxy_logins, tls=True)
    origin = f"https://{APP}"
    client = Client(ip="127.0.0.1", trusted=False, scheme=b"https")
    started = await login.start(APP, origin, "/echo", client, [])
    assert started.status == 302, started.body
    (binding,) = [value.decode() for name, value in started.headers if name == b"set-cookie"]
    assert binding.startswith("__Host-oauthproxy_login_"), binding
    assert "; Path=/;" in binding and "Secure" in binding and "Domain" not in binding, binding
    name, _, value = binding.partition(";")[0].partition("=")
    state = parse_qs(urlsplit(dict(started.headers)[b"location"].decode()).query)["state"][0]
    planted = [(b"cookie", f"{name.removeprefix('__Host-')}={value}".encode())]
    refused = await login.finish(f"code=x&state={state}", planted, "token", secure=True)
    assert refused.status == 403 and refused.error == "login_started_elsewhere", refused.body
    assert await storage.proxy_logins.get(state) is not None  # still the starting browser's


def test_the_backend_gets_the_auth_cookie_under_neither_name() -> None:
    received = [(b"cookie", b"a=1; __Host-unified_auth_token=t; unified_auth_token=u; b=2")]
    assert without_cookie(received, "unified_auth_token") == [(b"cookie", b"a=1; b=2")]


EVIL = "evil.example.com"


async def test_another_proxys_callback_never_receives_a_code_for_this_proxy(
    site: Ready, storage: Storage
) -> None:
    """The gateway's own client (`oauthproxy-gateway`: public, no consent page) has the callback
    of every redirect-mode proxy as a redirect URI, each owner's. An owner who made a
    redirect-mode proxy for a hostname whose DNS points at its own server lured a victim to
    `/authorize` with that callback, this proxy as the resource and its own PKCE challenge: the
    victim's code went to the owner's server, which redeemed it for a token that opened this
    proxy as the victim (alice). Now the authorization server answers a page: a code of the
    gateway's client is only for the proxy whose callback receives it."""
    await until_protected(site)
    port = site.http_port
    await storage.proxies.create(
        ProxyTarget.model_validate(
            {
                "hostname": EVIL,
                "target_url": "http://127.0.0.1:9",
                "owner_token_hash": "sha256:" + "f" * 64,
                "auth_enabled": True,
                "auth_mode": "redirect",
                "auth_required_users": ["*"],
            }
        )
    )
    evil_callback = f"http://{EVIL}:{port}/.oauthproxy/callback"

    async def registered() -> bool:
        client = await storage.oauth.get_client(GATEWAY_CLIENT_ID)
        return client is not None and evil_callback in client.redirect_uris

    await eventually(registered, what="the evil proxy's callback registered")
    verifier, challenge = oauth_helpers.pkce_pair()
    app_origin = f"http://{APP}:{port}"
    query = urlencode(
        {
            "response_type": "code",
            "client_id": GATEWAY_CLIENT_ID,
            "redirect_uri": evil_callback,
            "state": "lure",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
            "scope": "mcp:read mcp:write",
            "resource": app_origin,
            "proxy_hostname": APP,
        }
    )
    victim = new_browser(site)
    url = f"http://localhost:{port}/authorize?{query}"
    response = await victim.get(url)
    while response.status_code in (302, 303) and urlsplit(url).hostname != EVIL:
        url = str(httpx.URL(url).join(response.headers["location"]))
        if urlsplit(url).hostname != EVIL:
            response = await victim.get(url)
    assert urlsplit(url).hostname != EVIL or "code" not in oauth_helpers.query_of(url), url
    code = oauth_helpers.query_of(url).get("code", "none")
    async with httpx.AsyncClient(timeout=10) as client:
        exchanged = await client.post(
            f"http://127.0.0.1:{port}/token",
            headers={"Host": f"localhost:{port}"},
            data={
                "grant_type": "authorization_code",
                "code": code,
                "client_id": GATEWAY_CLIENT_ID,
                "code_verifier": verifier,
                "redirect_uri": evil_callback,
                "resource": app_origin,
            },
        )
    assert exchanged.status_code == 400, exchanged.text
    assert response.status_code == 400, response.text  # a page; nothing goes to the callback
