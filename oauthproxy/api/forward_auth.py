"""`/verify`: ForwardAuth for external proxies (Traefik, Caddy, nginx auth_request).

The external proxy sends the original request's headers; we answer 200 with the user's identity
headers when its bearer token (or auth cookie) is valid for the forwarded host, else 401 with a
`WWW-Authenticate` challenge. The forwarded host picks the policy of the proxy configured for it;
an unknown host gets the default policy (any allowed user, audience = the forwarded origin).
"""

from __future__ import annotations

import time

from quart import Blueprint, Response, current_app, jsonify, request

from oauthproxy.api.oauth_server import authorization_server
from oauthproxy.api.state import app_state
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.verify import InvalidToken
from oauthproxy.proxy.access import AccessPolicy, Deny, authorize, challenge

forward_auth = Blueprint("forward_auth", __name__)

DEFAULT_COOKIE = "unified_auth_token"


def _token(cookie_name: str) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(cookie_name) or None


def _forwarded_origin() -> tuple[str, str]:
    host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip()
    proto = request.headers.get("X-Forwarded-Proto", "https").split(",")[0].strip() or "https"
    return host, f"{proto}://{host}" if host else ""


_ANY_USER = ProxyTarget.model_validate(
    {"hostname": "verify.invalid", "target_url": "http://127.0.0.1:1", "auth_required_users": ["*"]}
)
"""The policy for a host no proxy is configured for: any user the issuer vouches for."""


async def _policy(hostname: str) -> tuple[AccessPolicy, ProxyTarget | None]:
    state = app_state(current_app)
    target = await state.storage.proxies.get(hostname.partition(":")[0]) if hostname else None
    policy = AccessPolicy.of(
        target or _ANY_USER,
        issuer=state.settings.oauth_issuer_url,
        global_users=state.settings.oauth_allowed_github_users,
    )
    return policy, target


def _refused(policy: AccessPolicy, origin: str, deny: Deny | None) -> Response:
    body = {
        "error": deny.error if deny else "unauthorized",
        "detail": deny.description if deny else "a bearer token is required",
    }
    response = jsonify(body)
    response.status_code = deny.status if deny else 401
    response.headers["WWW-Authenticate"] = challenge(policy, origin or policy.issuer, deny)
    return response


@forward_auth.route("/verify", methods=["GET", "POST"])
async def verify() -> Response:
    """200 with `X-Auth-*` identity headers for a valid token, else 401/403."""
    hostname, origin = _forwarded_origin()
    policy, target = await _policy(hostname)
    token = _token(target.auth_cookie_name if target else DEFAULT_COOKIE)
    if token is None:
        return _refused(policy, origin, None)
    prepared = await authorization_server().prepared()
    try:
        claims = prepared.verifier.verify(token, now=time.time())
    except InvalidToken as error:
        return _refused(policy, origin, Deny(401, "invalid_token", error.reason))
    record = await app_state(current_app).storage.oauth.get_token(claims.jti)
    if record is not None and record.revoked:
        return _refused(policy, origin, Deny(401, "invalid_token", "revoked"))
    decision = authorize(policy, claims, origin or None)
    if isinstance(decision, Deny):
        return _refused(policy, origin, decision)
    response = jsonify(
        {
            "sub": claims.subject,
            "username": claims.username,
            "scope": " ".join(sorted(claims.scopes)),
        }
    )
    for name, value in decision.headers:
        response.headers[name.decode()] = value.decode()
    return response
