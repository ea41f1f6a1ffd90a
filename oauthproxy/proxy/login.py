"""Browser login for `redirect`-mode proxies: the gateway is an OAuth client of its own
authorization server, and the resulting access token becomes a cookie on the proxy's host.

    browser → proxy (no token)        302 → {issuer}/authorize (PKCE, resource = the proxy's origin)
    … GitHub, allowlist check …       302 → {origin}/.oauthproxy/callback?code&state
    browser → proxy callback          code exchanged at {issuer}/token; Set-Cookie; 302 → the page

The page returned to is only ever a path on the proxy's own origin (`return_path`); the callback
goes on only in the browser that started the login (a cookie bound to the state, see
`oauth/browser.py`); login starts count against OAUTH_ANONYMOUS_RATE_LIMIT per client IP, since
each stores a login.

The login's PKCE verifier waits in Redis (`oauth:proxy_login:{state}`), so any replica can
finish a login another one started. The client, `oauthproxy-gateway`, is registered by the
supervisor with exactly the callback URIs of the redirect-mode proxies.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import ssl
from dataclasses import dataclass
from urllib.parse import parse_qs, urlencode

import httpx

from oauthproxy.errors import StorageUnavailable
from oauthproxy.models.oauth import ClientOrigin, OAuthClient
from oauthproxy.oauth.browser import (
    browser_hash,
    host_cookie,
    login_cookie_name,
    new_browser_token,
    same_browser,
)
from oauthproxy.oauth.client_address import client_address
from oauthproxy.oauth.rate_limits import Limited, over_limit
from oauthproxy.proxy.access import printable
from oauthproxy.proxy.headers import Client, Headers, Network, parse_networks
from oauthproxy.proxy.limits import client_key
from oauthproxy.proxy.protect import cookie_token
from oauthproxy.proxy.responses import Reply, error_reply, storage_error
from oauthproxy.settings import Settings
from oauthproxy.storage.base import within
from oauthproxy.storage.proxy_logins import LOGIN_TTL_SECONDS, ProxyLogin, ProxyLoginRepository

CALLBACK_PATH = "/.oauthproxy/callback"
GATEWAY_CLIENT_ID = "oauthproxy-gateway"
EXCHANGE_TIMEOUT_SECONDS = 10.0


def gateway_client(redirect_uris: list[str]) -> OAuthClient:
    """The gateway's own client: public (PKCE), trusted (no consent page)."""
    return OAuthClient(
        client_id=GATEWAY_CLIENT_ID,
        client_name="oauthproxy browser login",
        redirect_uris=sorted(redirect_uris),
        token_endpoint_auth_method="none",  # noqa: S106 - a method name
        origin=ClientOrigin.ADMIN,
    )


def callback_uris(hostname: str, *, http_port: int, https_port: int | None) -> list[str]:
    """Where a browser may come back to for `hostname` (with and without the default port)."""
    uris = [f"http://{hostname}{_port(http_port, 80)}{CALLBACK_PATH}"]
    if https_port is not None:
        uris.append(f"https://{hostname}{_port(https_port, 443)}{CALLBACK_PATH}")
    return uris


def _port(port: int, default: int) -> str:
    return "" if port in (0, default) else f":{port}"


RETURN_MAX = 2048
"""The longest address a login returns to. The login keeps it in Redis until it ends, and
anyone may start one: a 64 KiB query would make each anonymous start keep 64 KiB."""


def return_path(target: str) -> str | None:
    """The page to come back to after the login: the request's target when it is a path (and
    query) on the proxy's own origin, else None. Browsers read `//host`, `/\\host` and `\\\\host`
    as another site (they treat a backslash as a slash), and drop tabs and newlines before
    reading, so a target with a backslash, a control character, a space or a non-ASCII byte, or
    one that does not start with exactly one slash, is never a return address."""
    if not target.startswith("/") or target[1:2] in ("/", "\\"):
        return None
    if any(char <= " " or char >= "\x7f" or char == "\\" for char in target):
        return None
    return target


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _redirect(location: str, *cookies: str) -> Reply:
    headers = [(b"location", location.encode()), (b"cache-control", b"no-store")]
    headers += [(b"set-cookie", cookie.encode()) for cookie in cookies]
    return Reply(302, headers, b"", "login")


def _cookie(name: str, value: str, *, path: str, max_age: int, secure: bool) -> str:
    """Over HTTPS a `__Host-` cookie at `/` (no other host can plant it: `host_cookie`)."""
    name, path = host_cookie(name, path, secure=secure)
    cookie = f"{name}={value}; Path={path}; HttpOnly; SameSite=Lax; Max-Age={max_age}"
    return cookie + ("; Secure" if secure else "")


@dataclass(frozen=True)
class BrowserLogin:
    issuer: str
    logins: ProxyLoginRepository
    tls: ssl.SSLContext | bool
    scope: str = "mcp:read mcp:write"
    rate_limit: int = 0
    """OAUTH_ANONYMOUS_RATE_LIMIT: login starts per client IP and window (0: no limit)."""
    rate_window: int = 60
    redis_timeout: float = 3.0
    """API_REDIS_TIMEOUT: the longest a login's Redis command may keep its request waiting."""
    trusted: tuple[Network, ...] = ()
    """TRUSTED_PROXIES: peers whose X-Forwarded-For names the client."""

    @classmethod
    def of(
        cls, settings: Settings, logins: ProxyLoginRepository, tls: ssl.SSLContext | bool
    ) -> BrowserLogin:
        return cls(
            settings.oauth_issuer_url,
            logins,
            tls,
            rate_limit=settings.oauth_anonymous_rate_limit,
            rate_window=settings.oauth_anonymous_rate_window,
            trusted=parse_networks(settings.trusted_proxies),
            redis_timeout=settings.api_redis_timeout,
        )

    async def start(
        self, hostname: str, origin: str, target: str, client: Client, received: Headers
    ) -> Reply:
        """Send the browser to the authorization server, to come back to `target` afterwards
        (400 when `target` is no path on this origin: the login would end on another site;
        429 when this client started too many logins, each of which is stored; 503 when Redis
        fails or stalls)."""
        if len(target) > RETURN_MAX:
            detail = (
                f"a login returns to the address asked for, and this one is longer than "
                f"{RETURN_MAX} characters: log in from a shorter address"
            )
            return error_reply(414, "return_address_too_long", detail)
        return_to = return_path(target)
        if return_to is None:
            detail = "after a login the browser only returns to a path on this site"
            return error_reply(400, "invalid_return_address", detail)
        state, verifier, browser = (
            secrets.token_urlsafe(24),
            secrets.token_urlsafe(48),
            new_browser_token(),
        )
        login = ProxyLogin(
            verifier=verifier,
            return_to=return_to,
            origin=origin,
            hostname=hostname,
            browser_hash=browser_hash(browser),
        )
        try:
            limited = await self._admit(client, received)
            if limited is None:
                await within(self.redis_timeout, self.logins.put(state, login))
        except StorageUnavailable as error:
            return storage_error(error, "logins")
        if limited is not None:
            reply = error_reply(429, "too_many_requests", limited.description)
            retry = (b"retry-after", str(limited.retry_after).encode())
            return Reply(reply.status, [*reply.headers, retry], reply.body, reply.error)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": GATEWAY_CLIENT_ID,
                "redirect_uri": origin + CALLBACK_PATH,
                "state": state,
                "code_challenge": _challenge(verifier),
                "code_challenge_method": "S256",
                "scope": self.scope,
                "resource": origin,
                "proxy_hostname": hostname,
            }
        )
        binding = _cookie(
            login_cookie_name(state),
            browser,
            path=CALLBACK_PATH,
            max_age=LOGIN_TTL_SECONDS,
            secure=origin.startswith("https://"),
        )
        return _redirect(f"{self.issuer}/authorize?{query}", binding)

    async def finish(
        self, query: str, received: Headers, cookie_name: str, *, secure: bool
    ) -> Reply:
        """The callback: in the browser that started the login, exchange the code, set the
        cookie, go back to the page (503 when Redis fails or stalls)."""
        try:
            return await self._finish(query, received, cookie_name, secure=secure)
        except StorageUnavailable as error:
            return storage_error(error, "logins")

    async def _finish(
        self, query: str, received: Headers, cookie_name: str, *, secure: bool
    ) -> Reply:
        params = {name: values[0] for name, values in parse_qs(query).items()}
        if "error" in params:
            # a fixed code: the client's `error` was the reply's, so the log's reason and the
            # metrics (`bad_gateway` counts as an upstream failure) were anyone's to write
            detail = f"the authorization server refused the login: {params['error']}"[:200]
            return error_reply(403, "login_refused", printable(detail))
        state = params.get("state", "")
        binding = login_cookie_name(state)
        login = await within(self.redis_timeout, self.logins.get(state))
        if login is None or "code" not in params:
            return error_reply(400, "invalid_request", "unknown or used login; start again")
        sent = cookie_token(received, host_cookie(binding, CALLBACK_PATH, secure=secure)[0])
        if not same_browser(login.browser_hash, sent):
            detail = (
                "this login was started in another browser (or cookies are off); reload the page"
            )
            return error_reply(403, "login_started_elsewhere", detail)
        if await within(self.redis_timeout, self.logins.take(state)) is None:
            return error_reply(400, "invalid_request", "unknown or used login; start again")
        token, lifetime = await self._exchange(params["code"], login)
        if token is None:
            return error_reply(502, "login_failed", "the authorization server refused the code")
        return _redirect(
            login.return_to,
            _cookie(cookie_name, token, path="/", max_age=lifetime, secure=secure),
            _cookie(binding, "", path=CALLBACK_PATH, max_age=0, secure=secure),
        )

    async def _admit(self, client: Client, received: Headers) -> Limited | None:
        if not self.rate_limit:
            return None
        forwarded_for = [v.decode("latin-1") for n, v in received if n == b"x-forwarded-for"]
        ip = client_address(client.ip, forwarded_for, self.trusted) if client.trusted else client.ip
        window = self.rate_window * 1000
        counted = await within(self.redis_timeout, self.logins.count_start(client_key(ip), window))
        return over_limit(counted, self.rate_limit, self.rate_window, "login starts")

    async def _exchange(self, code: str, login: ProxyLogin) -> tuple[str | None, int]:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": login.origin + CALLBACK_PATH,
            "client_id": GATEWAY_CLIENT_ID,
            "code_verifier": login.verifier,
            "resource": login.origin,
        }
        async with httpx.AsyncClient(verify=self.tls, timeout=EXCHANGE_TIMEOUT_SECONDS) as client:
            try:
                response = await client.post(f"{self.issuer}/token", data=form)
            except httpx.HTTPError:
                return None, 0
        if response.status_code != 200:
            return None, 0
        body = response.json()
        return body.get("access_token"), int(body.get("expires_in", 0))
