"""Signing in to the dashboard with GitHub: `/dashboard/github/login` → GitHub →
`/dashboard/github/callback` → `/dashboard/?signed-in=github`, where the page takes its session.

The login's `state` is stored for OAUTH_SESSION_TIMEOUT seconds with the hash of a random token
that only the starting browser holds (an HttpOnly cookie, see `oauth/browser.py`); the callback
takes it once, so a forged, replayed or foreign state signs nobody in. The GitHub login then
names the token to act as (`sign_in.token_for`). The browser never receives that token's
secret: it gets a dashboard session (`dsh_…`, DASHBOARD_SESSION_LIFETIME seconds), first in an
HttpOnly cookie that only `POST /dashboard/session` reads (once), then, like a token typed on
the sign-in page, in the tab's sessionStorage as a bearer credential. Sign out ends it in Redis.
Over HTTPS both cookies are `__Host-` cookies (path `/`), which no other host can set: a sibling
host could otherwise plant its own login or session in the browser (`_cookie`).
Neither the session, the token, nor GitHub's access token is ever logged.
"""

from __future__ import annotations

import logging
import secrets

from quart import Blueprint, Response, current_app, jsonify, redirect, render_template, request
from quart_schema import hide
from werkzeug.wrappers.response import Response as WerkzeugResponse

from oauthproxy.api.auth import bearer_secret
from oauthproxy.api.errors import ApiError
from oauthproxy.api.oauth_server import authorization_server, requesting_ip
from oauthproxy.api.state import app_state
from oauthproxy.dashboard.pages import security_headers
from oauthproxy.dashboard.sign_in import SignInRefused, token_for
from oauthproxy.oauth.browser import browser_hash, new_browser_token, same_browser
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.github import GitHub, GitHubError
from oauthproxy.oauth.registration import admit_anonymous
from oauthproxy.storage.dashboard import SESSION_PREFIX, DashboardLogin, DashboardRepository

log = logging.getLogger(__name__)

github_sign_in = Blueprint("dashboard_github", __name__, template_folder="templates")
github_sign_in.after_request(security_headers)

LOGIN_COOKIE = "oauthproxy_dashboard_login"
LOGIN_PATH = "/dashboard/github/"
SESSION_COOKIE = "oauthproxy_dashboard_session"
SESSION_PATH = "/dashboard/session"
HANDOFF_SECONDS = 60
"""How long the new session waits in its cookie for the page to take it."""
CALLBACK = "/dashboard/github/callback"


@github_sign_in.get("/dashboard/session/options")
@hide
async def options() -> Response:
    """What the sign-in page offers: `{"github": true}` when GitHub is configured."""
    return jsonify({"github": await _github() is not None})


@github_sign_in.get("/dashboard/github/login")
@hide
async def login() -> WerkzeugResponse | Response:
    """Start signing in: remember the state for this browser, then off to GitHub."""
    github = await _github()
    if github is None:
        return await _refused(SignInRefused("GitHub sign-in is off", _NOT_CONFIGURED, 404))
    server = authorization_server()
    try:  # each start stores a state: counted per client IP as the OAuth server's logins are
        await admit_anonymous(server, requesting_ip(server))
    except OAuthError as error:
        page = await _refused(SignInRefused("Too many sign-ins", error.description, 429))
        page.headers.update(error.headers)
        return page
    settings = app_state(current_app).settings
    state, browser = secrets.token_urlsafe(32), new_browser_token()
    redirect_uri = _origin() + CALLBACK
    pending = DashboardLogin(browser_hash=browser_hash(browser), redirect_uri=redirect_uri)
    await _storage().put_login(state, pending, settings.oauth_session_timeout)
    response = redirect(github.login_url(state, redirect_uri))
    _set_cookie(response, LOGIN_COOKIE, browser, LOGIN_PATH, settings.oauth_session_timeout)
    return response


@github_sign_in.get(CALLBACK)
@hide
async def callback() -> WerkzeugResponse | Response:
    """GitHub sends the browser back: check the state, learn who it is, make the session."""
    try:
        secret = await _sign_in()
    except SignInRefused as refusal:  # the login cookie stays: a forged callback visited
        return await _refused(refusal)  # by this browser must not end its own sign-in
    signed_in = redirect("/dashboard/?signed-in=github")
    _delete_cookie(signed_in, LOGIN_COOKIE, LOGIN_PATH)
    _set_cookie(signed_in, SESSION_COOKIE, secret, SESSION_PATH, HANDOFF_SECONDS)
    return signed_in


@github_sign_in.post(SESSION_PATH)
@hide
async def take_session() -> Response:
    """The session the callback made, once: `{"token": "dsh_…"}` (401 without one)."""
    secret = request.cookies.get(_cookie(SESSION_COOKIE)[0], "")
    if not secret.startswith(SESSION_PREFIX) or await _storage().session(secret) is None:
        raise ApiError(
            401,
            "unauthorized",
            "no GitHub sign-in is waiting in this browser; sign in again",
            field=SESSION_COOKIE,
        )
    response = jsonify({"token": secret})
    response.headers["Cache-Control"] = "no-store"
    _delete_cookie(response, SESSION_COOKIE, SESSION_PATH)
    return response


@github_sign_in.delete(SESSION_PATH)
@hide
async def end_session() -> Response:
    """Sign out: the session of the bearer credential ends (204, also when it had ended)."""
    secret = bearer_secret()
    if secret.startswith(SESSION_PREFIX):
        await _storage().end_session(secret)
    return Response("", 204)


_NOT_CONFIGURED = (
    "this gateway has no GitHub application (GITHUB_CLIENT_ID and GITHUB_CLIENT_SECRET); "
    "sign in with a token"
)


async def _sign_in() -> str:
    """The new session's secret, or `SignInRefused` saying why not."""
    state = _single("state")
    pending = await _storage().get_login(state) if state else None
    if pending is None:
        raise SignInRefused("Sign-in expired", _EXPIRED)
    if not same_browser(pending.browser_hash, request.cookies.get(_cookie(LOGIN_COOKIE)[0])):
        raise SignInRefused("Sign-in started elsewhere", _ELSEWHERE, 403)
    if await _storage().take_login(state) is None:
        raise SignInRefused("Sign-in expired", _EXPIRED)
    github = await _github()
    code = _single("code")
    if github is None or "error" in request.args or not code:
        raise SignInRefused("GitHub sign-in did not complete", "GitHub did not approve it", 403)
    try:
        identity = await github.identity(code, pending.redirect_uri)
    except GitHubError as error:
        raise SignInRefused("GitHub sign-in failed", str(error), 502) from None
    state_of = app_state(current_app)
    token = await token_for(identity.username, state_of.storage, state_of.settings)
    log.info("dashboard: GitHub user %s signed in as the token %s", identity.username, token.name)
    return await _storage().create_session(
        token, identity.username, state_of.settings.dashboard_session_lifetime
    )


_EXPIRED = "this sign-in is unknown, was used already or took too long; start again"
_ELSEWHERE = (
    "this sign-in was started in another browser (or cookies are off); start again in this one"
)


MAX_PARAMETER = 512
"""Longest `state` or `code` looked at (ours are 43 characters; GitHub's codes are short)."""


def _single(name: str) -> str:
    """The query parameter given once and not overlong, else ""."""
    values = request.args.getlist(name)
    return values[0] if len(values) == 1 and len(values[0]) <= MAX_PARAMETER else ""


async def _github() -> GitHub | None:
    return (await authorization_server().prepared()).github


def _storage() -> DashboardRepository:
    return app_state(current_app).storage.dashboard


def _origin() -> str:
    """Where browsers reach the dashboard: DASHBOARD_URL, else the origin this request came to."""
    configured = app_state(current_app).settings.dashboard_url
    return str(configured or request.host_url).rstrip("/")


def _cookie(name: str, path: str = "/") -> tuple[str, str]:
    """A cookie's name and path as set and read. Over HTTPS: `__Host-` and path `/`, so no
    other host can set it (a proxied sibling such as tenant.example.com can set a cookie for
    example.com, and so hand the dashboard at admin.example.com a login or a session of its
    own: the browser's user would then work as the sibling's token)."""
    return (f"__Host-{name}", "/") if _origin().startswith("https:") else (name, path)


def _set_cookie(
    response: WerkzeugResponse | Response, name: str, value: str, path: str, seconds: int
) -> None:
    name, path = _cookie(name, path)
    secure = name.startswith("__Host-")
    response.set_cookie(
        name, value, max_age=seconds, path=path, httponly=True, samesite="Lax", secure=secure
    )


def _delete_cookie(response: WerkzeugResponse | Response, name: str, path: str) -> None:
    name, path = _cookie(name, path)
    response.delete_cookie(name, path=path, secure=name.startswith("__Host-"), httponly=True)


async def _refused(refusal: SignInRefused) -> Response:
    page = await render_template(
        "dashboard_sign_in_refused.html", title=refusal.title, detail=refusal.detail
    )
    return Response(page, refusal.status, {"Content-Type": "text/html; charset=utf-8"})
