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


async def admit(
    protection: Protection, login: BrowserLogin | None, exchange: Exchange
) -> Reply | Allow:
    """Protected resource metadata, the browser login's callback, or the bearer check. The
    origin is the normalised authority: tokens are issued for `http://mcp.test`, whatever case
    or default port a client's Host header spells it with."""
    client, view, received = exchange.client, exchange.view, exchange.received
    origin = f"{client.scheme.decode()}://{view.authority}"
    path = view.path
    if protection.serves_metadata and is_metadata_path(path):
        return metadata_reply(protection, origin)
    redirect = protection.policy is not None and protection.policy.mode is AuthMode.REDIRECT
    if redirect and login is not None and path == CALLBACK_PATH:
        secure = client.scheme == b"https"
        cookie = protection.target.auth_cookie_name
        return await login.finish(view.query[1:], received, cookie, secure=secure)
    outcome = check(protection, received, origin, path, view.has_encoded_separator)
    if not isinstance(outcome, NeedsLogin):
        return outcome
    if login is None:
        return error_reply(503, "login_unavailable", "browser login is not available")
    target = view.target.decode("latin-1")
    return await login.start(protection.target.hostname, origin, target, client, received)
