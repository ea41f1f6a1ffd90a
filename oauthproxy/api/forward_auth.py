"""`/verify`: ForwardAuth for external proxies (Traefik, Caddy, nginx auth_request).

The external proxy sends the original request's headers; we answer 200 with the user's identity
headers when its bearer token (or auth cookie) is valid for the forwarded host, else 401 with a
`WWW-Authenticate` challenge. The forwarded host picks the policy of the proxy configured for it;
an unknown host gets the default policy (any allowed user, audience = the forwarded origin).
Without exactly one X-Forwarded-Host there is no audience to check: 400, never a pass.

Whose X-Forwarded-Host is this? The admin API listens on loopback, so it comes either from a
process on the gateway's host (the external proxy, trusted as any local process is) or from the
gateway's own data plane, which drops every client's forwarding headers and sets X-Forwarded-Host
to the Host it routed by. A remote client therefore cannot name a host other than the one its
request went to.
"""

from __future__ import annotations

import re
import time

from quart import Blueprint, Response, current_app, jsonify, request
from quart_schema import document_headers

from oauthproxy.api import public_answers
from oauthproxy.api.contract import answers
from oauthproxy.api.oauth_server import authorization_server
from oauthproxy.api.state import app_state
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.browser import host_cookie
from oauthproxy.oauth.verify import InvalidToken
from oauthproxy.proxy.access import AccessPolicy, Deny, authorize, challenge

forward_auth = Blueprint("forward_auth", __name__)

DEFAULT_COOKIE = "unified_auth_token"


def _token(cookie_name: str, *, secure: bool) -> str | None:
    """The bearer token, else the auth cookie under the name it is set under (over HTTPS only
    `__Host-`: the plain name may have been planted by a sibling host)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return request.cookies.get(host_cookie(cookie_name, "/", secure=secure)[0]) or None


class NoForwardedHost(ValueError):
    """The caller did not say, unambiguously, which host the request was for."""


AUTHORITY = re.compile(r"(?:(?:[a-z0-9-]+\.)*[a-z0-9-]+|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?")


def forwarded_origin(hosts: list[str], protos: list[str]) -> tuple[str, str]:
    """The forwarded host (lower-case) and origin, from every X-Forwarded-Host and
    X-Forwarded-Proto value sent. Pure. Without exactly one well-formed host there is no
    resource to check the token's audience against, so NoForwardedHost: a token for any other
    site must never pass for want of a header."""
    values = [value.strip() for header in hosts for value in header.split(",")]
    if not values or values == [""]:
        raise NoForwardedHost("X-Forwarded-Host is required: it names the host the token is for")
    if len(values) != 1:
        raise NoForwardedHost("X-Forwarded-Host must name exactly one host")
    host = values[0].lower()
    if not AUTHORITY.fullmatch(host):
        raise NoForwardedHost("X-Forwarded-Host is not a host[:port]")
    schemes = [value.strip().lower() for header in protos for value in header.split(",")]
    if len(schemes) > 1 or (schemes and schemes[0] not in ("http", "https")):
        raise NoForwardedHost("X-Forwarded-Proto must be one of http, https")
    return host, f"{schemes[0] if schemes else 'https'}://{host}"


_UNPROXIED = ProxyTarget.model_validate(
    {"hostname": "verify.invalid", "target_url": "http://127.0.0.1:1"}
)
"""The policy for a host no proxy is configured for: the global allowlist
(OAUTH_ALLOWED_GITHUB_USERS), which a login for such a host is under too."""


async def _policy(hostname: str) -> tuple[AccessPolicy, ProxyTarget | None]:
    """The policy of the forwarded host: its proxy's when the admin owns that proxy, else the
    global allowlist's. `/verify` answers the admin's own external proxy (it listens on
    loopback), in front of traffic the gateway's data plane never carries: an owner who made a
    proxy of the same name (any free name can be claimed) decided who passed there."""
    state = app_state(current_app)
    target = await state.storage.proxies.get(hostname.partition(":")[0]) if hostname else None
    if target is not None and not await state.storage.tokens.is_admins(target.owner_token_hash):
        target = None  # a tenant's proxy: its policy is for its own traffic
    # what is left is the admin's (or no proxy): never a tenant's, whose extra audiences would
    # be narrowed to its own proxies (`access.own_audiences`)
    owner = target.owner_token_hash if target else None
    policy = AccessPolicy.of(
        target or _UNPROXIED,
        issuer=state.settings.oauth_issuer_url,
        global_users=state.settings.oauth_allowed_github_users,
        admins=frozenset({owner}) if owner else frozenset(),
        identity_max_age=state.settings.oauth_identity_max_age,
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
@answers(*public_answers.VERIFY)
@document_headers(public_answers.ForwardedHeaders)
async def verify() -> Response:
    """200 with `X-Auth-*` identity headers for a valid token, else 401/403."""
    try:
        hostname, origin = forwarded_origin(
            request.headers.getlist("X-Forwarded-Host"),
            request.headers.getlist("X-Forwarded-Proto"),
        )
    except NoForwardedHost as error:
        response = jsonify({"error": "invalid_request", "detail": str(error)})
        response.status_code = 400
        return response
    if len(request.headers.getlist("Authorization")) > 1:  # the backend gets them all
        response = jsonify(
            {"error": "invalid_request", "detail": "send at most one Authorization header"}
        )
        response.status_code = 400
        return response
    policy, target = await _policy(hostname)
    secure = origin.startswith("https://")
    token = _token(target.auth_cookie_name if target else DEFAULT_COOKIE, secure=secure)
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
