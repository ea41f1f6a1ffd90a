"""What a request to a protected proxy meets before it is forwarded: its resource metadata, the
browser login's callback, or the bearer check (and the browser login when that fails)."""

from __future__ import annotations

from oauthproxy.models.proxies import AuthMode
from oauthproxy.proxy.access import Allow
from oauthproxy.proxy.exchange import Exchange
from oauthproxy.proxy.login import CALLBACK_PATH, BrowserLogin
from oauthproxy.proxy.protect import (
    NeedsLogin,
    Protection,
    check,
    is_metadata_path,
    metadata_reply,
)
from oauthproxy.proxy.responses import Reply, error_reply


def admitted_at_once(
    protection: Protection, login: BrowserLogin | None, exchange: Exchange
) -> Reply | Allow | None:
    """Protected resource metadata, or the bearer check's answer: what needs no await. None:
    the browser login takes the request (its callback, or a browser to send to log in), and
    `login_step` answers it. The origin is the normalised authority: tokens are issued for
    `http://mcp.test`, whatever case or default port a client's Host header spells it with."""
    view = exchange.view
    origin = f"{exchange.client.scheme.decode()}://{view.authority}"
    path = view.path
    if protection.serves_metadata and is_metadata_path(path):
        return metadata_reply(protection, origin)
    if path == CALLBACK_PATH and login is not None and _redirects(protection):
        return None
    outcome = check(protection, exchange.received, origin, path, view.has_encoded_separator)
    if not isinstance(outcome, NeedsLogin):
        return outcome
    if login is None:
        return error_reply(503, "login_unavailable", "browser login is not available")
    return None


async def login_step(protection: Protection, login: BrowserLogin, exchange: Exchange) -> Reply:
    """The browser login's answer to a request `admitted_at_once` left to it: its callback
    finishes a login, any other request starts one."""
    client, view, received = exchange.client, exchange.view, exchange.received
    origin = f"{client.scheme.decode()}://{view.authority}"
    if view.path == CALLBACK_PATH and _redirects(protection):
        secure = client.scheme == b"https"
        cookie = protection.target.auth_cookie_name
        return await login.finish(view.query[1:], received, cookie, secure=secure)
    target = view.target.decode("latin-1")
    return await login.start(protection.target.hostname, origin, target, client, received)


def _redirects(protection: Protection) -> bool:
    """A browser without a token is sent to log in (auth mode `redirect`)."""
    return protection.policy is not None and protection.policy.mode is AuthMode.REDIRECT
