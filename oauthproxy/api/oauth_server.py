"""The OAuth 2.1 authorization server's root-level endpoints (reached publicly through the
gateway on the auth hostname): `/authorize`, `/callback`, `/consent`, `/token`, `/revoke`,
`/introspect`, `/register[/{client_id}]`, `/jwks` and the two metadata documents.

Thin adapters: HTTP in, `oauthproxy.oauth` does the work, HTTP out. Errors are the RFCs' JSON on
the machine endpoints and an HTML page in the browser flow; a redirect goes only to a redirect URI
the client registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from quart import Blueprint, Response, current_app, jsonify, render_template, request
from quart_schema import DataSource, document_request
from werkzeug.datastructures import MultiDict

from oauthproxy.api import public_answers
from oauthproxy.api.contract import answers
from oauthproxy.api.forms import FORM_MAX_BYTES, FormRefused, bounded_form
from oauthproxy.api.state import app_state
from oauthproxy.oauth import authorize, consent, grants, login, registration, revocation
from oauthproxy.oauth.browser import host_cookie, login_cookie_name
from oauthproxy.oauth.client_address import client_address
from oauthproxy.oauth.clients import presented_credentials
from oauthproxy.oauth.codes import client_redirect
from oauthproxy.oauth.errors import OAuthError, PageError, RedirectError
from oauthproxy.oauth.metadata import server_metadata
from oauthproxy.oauth.parameters import Params
from oauthproxy.oauth.redirect_uris import ascii_netloc
from oauthproxy.oauth.server import OAuthServer

TEMPLATES = Path(__file__).resolve().parent.parent / "oauth" / "templates"
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
PAGE_HEADERS = {
    **NO_STORE,
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
    "frame-ancestors 'none'",
}
CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Allow-Headers": "Authorization, Content-Type, MCP-Protocol-Version",
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
}
BROWSER_PATHS = ("/authorize", "/callback", "/consent")
CONSENT_COOKIE = "oauthproxy_consent"

oauth_server = Blueprint("oauth_server", __name__, template_folder=str(TEMPLATES))


def authorization_server() -> OAuthServer:
    found = current_app.extensions.get("oauth_server")
    if found is None:
        state = app_state(current_app)
        found = current_app.extensions["oauth_server"] = OAuthServer(state.settings, state.storage)
    server: OAuthServer = found
    return server


def _params(values: MultiDict[str, str]) -> Params:
    return {name: values.getlist(name) for name in values}


async def _json_body() -> Any:
    """The request's JSON, or None when it is not JSON, or not even UTF-8 (the endpoint then
    answers with its own OAuth error, never the admin API's `invalid_json`)."""
    try:
        return await request.get_json(silent=True)
    except UnicodeDecodeError:
        return None


async def _body() -> Params:
    """The request's form (`forms.bounded_form`), or its JSON object (the specification shows
    JSON token requests)."""
    try:
        if request.mimetype != "application/json":
            return await bounded_form()
        if len(await request.get_data(cache=True)) > FORM_MAX_BYTES:
            raise FormRefused(f"the body is larger than {FORM_MAX_BYTES} bytes")
    except FormRefused as refused:
        raise OAuthError("invalid_request", str(refused)) from None
    body = await _json_body()
    if not isinstance(body, dict):
        raise OAuthError("invalid_request", "the body must be a JSON object or a form")
    return {k: [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in body.items()}


def _headers() -> dict[str, str]:
    return {name.lower(): value for name, value in request.headers.items()}


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    response = jsonify(body)
    response.status_code = status
    response.headers.update({**NO_STORE, **(headers or {})})
    return response


def redirect(location: str, status: int) -> Response:
    """A redirect that is never cached (it may carry a code)."""
    return Response("", status, {"Location": location, **NO_STORE})


async def _page(template: str, status: int = 200, **context: Any) -> Response:
    return Response(await render_template(template, **context), status, PAGE_HEADERS)


@oauth_server.errorhandler(OAuthError)
async def oauth_error(error: OAuthError) -> Response:
    return _json(error.body(), error.status, error.headers)


@oauth_server.errorhandler(PageError)
async def page_error(error: PageError) -> Response:
    return await _page("oauth_error.html", error.status, title=error.title, detail=error.detail)


def _destination(redirect_uri: str) -> str:
    """Where a redirect URI leads, as a user would recognise it: its host (in ASCII, as the
    browser resolves it: a homograph shows its `xn--` form), else its scheme (an app's own
    `com.example.app:/callback`)."""
    parts = urlsplit(redirect_uri)
    return ascii_netloc(parts) or f"{parts.scheme}:"


@oauth_server.errorhandler(RedirectError)
async def redirect_error(error: RedirectError) -> Response:
    location = client_redirect(
        error.redirect_uri,
        authorization_server().issuer,
        error.state,
        error=error.error,
        error_description=error.description,
    )
    if error.automatic:
        return redirect(location, 302)
    return await _page(
        "oauth_refused.html",
        400,
        error=error.error,
        detail=error.description,
        destination=_destination(error.redirect_uri),
        location=location,
    )


@oauth_server.after_request
async def cross_origin(response: Response) -> Response:
    """Machine endpoints answer browsers of any origin (MCP clients may run in one)."""
    if not request.path.startswith(BROWSER_PATHS):
        response.headers.update(CORS)
    return response


@oauth_server.get("/.well-known/oauth-authorization-server")
@oauth_server.get("/.well-known/openid-configuration")
@answers(*public_answers.METADATA)
async def metadata() -> Response:
    response = jsonify(server_metadata(app_state(current_app).settings))
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@oauth_server.get("/jwks")
@answers(*public_answers.JWKS)
async def jwks() -> Response:
    response = jsonify((await authorization_server().prepared()).keys.jwks())
    response.headers["Cache-Control"] = "public, max-age=300"
    return response


@oauth_server.get("/authorize")
@answers(*public_answers.AUTHORIZE)
async def authorize_endpoint() -> Response:
    server = authorization_server()
    await registration.admit_anonymous(server, requesting_ip(server))
    start = await authorize.begin(server, _params(request.args))
    response = redirect(start.location, 302)
    _set_browser_cookie(server, response, start.cookie_name, start.browser_token, "/callback")
    return response


def _browser_cookie(server: OAuthServer, name: str, path: str) -> tuple[str, str]:
    """The name and path of a login-binding cookie: `__Host-` at `/` over HTTPS, so a sibling
    host cannot plant one (cookie tossing, see `oauth/browser.py`)."""
    return host_cookie(name, path, secure=server.issuer.startswith("https://"))


def _set_browser_cookie(
    server: OAuthServer, response: Response, name: str, value: str, path: str
) -> None:
    """A cookie binding the next step of the login to this browser (sent on the top-level
    redirect back from GitHub: SameSite=Lax)."""
    name, path = _browser_cookie(server, name, path)
    response.set_cookie(
        name,
        value,
        max_age=server.settings.oauth_session_timeout,
        path=path,
        secure=server.issuer.startswith("https://"),
        httponly=True,
        samesite="Lax",
    )


def _delete_browser_cookie(server: OAuthServer, response: Response, name: str, path: str) -> None:
    name, path = _browser_cookie(server, name, path)
    secure = server.issuer.startswith("https://")
    response.delete_cookie(name, path=path, secure=secure, httponly=True)


@oauth_server.get("/callback")
@answers(*public_answers.CALLBACK)
async def callback() -> Response:
    server = authorization_server()
    params = _params(request.args)
    cookie = login_cookie_name(login.callback_state(params))
    sent = request.cookies.get(_browser_cookie(server, cookie, "/callback")[0])
    step = await login.finish(server, params, sent)
    response = redirect(step.location, 302)
    _delete_browser_cookie(server, response, cookie, "/callback")
    if step.browser_token is not None:
        _set_browser_cookie(server, response, CONSENT_COOKIE, step.browser_token, "/consent")
    return response


@oauth_server.get("/consent")
@answers(*public_answers.CONSENT_PAGE)
async def consent_page() -> Response:
    view = await consent.view(authorization_server(), request.args.get("request", ""))
    return await _page("oauth_consent.html", view=view)


@oauth_server.post("/consent")
@answers(*public_answers.CONSENT_DECISION)
async def consent_decision() -> Response:
    server = authorization_server()
    try:
        form = await bounded_form()
    except FormRefused as refused:
        raise PageError("Invalid request", str(refused)) from None

    def first(name: str) -> str:
        return (form.get(name) or [""])[0]

    location = await consent.decide(
        server,
        first("request"),
        first("csrf_token"),
        request.cookies.get(_browser_cookie(server, CONSENT_COOKIE, "/consent")[0], ""),
        approve=first("decision") == "approve",
    )
    response = redirect(location, 303)
    _delete_browser_cookie(server, response, CONSENT_COOKIE, "/consent")
    return response


@oauth_server.post("/token")
@answers(*public_answers.TOKEN)
async def token() -> Response:
    server, params, headers = authorization_server(), await _body(), _headers()
    await _admit_document_client(server, params, headers)
    return _json(await grants.exchange(server, params, headers))


@oauth_server.post("/revoke")
@answers(*public_answers.REVOKE)
@document_request(public_answers.TokenReference, source=DataSource.FORM)
async def revoke() -> Response:
    server, params, headers = authorization_server(), await _body(), _headers()
    await _admit_document_client(server, params, headers)
    await revocation.revoke(server, params, headers)
    return Response("", 200, NO_STORE)


@oauth_server.post("/introspect")
@answers(*public_answers.INTROSPECT)
@document_request(public_answers.TokenReference, source=DataSource.FORM)
async def introspect() -> Response:
    server, params, headers = authorization_server(), await _body(), _headers()
    admin = await _admin_bearer(headers.get("authorization", ""))
    if not admin:
        await _admit_document_client(server, params, headers)
    return _json(await revocation.introspect(server, params, headers, admin=admin))


async def _admit_document_client(
    server: OAuthServer, params: Params, headers: dict[str, str]
) -> None:
    """A request naming a metadata-document client the gateway has not cached makes it fetch
    and store that document: counted as an anonymous request that stores something."""
    try:
        client_id, _ = presented_credentials(params, headers.get("authorization"))
    except OAuthError:
        return  # the endpoint itself answers malformed credentials
    if await (await server.prepared()).resolver.would_fetch(client_id):
        await registration.admit_anonymous(server, requesting_ip(server))


async def _admin_bearer(authorization: str) -> bool:
    """Whether the caller shows the admin token, which may introspect any token. Any other
    bearer (an owner token, an unknown one) counts for nothing: the caller is then treated as
    one without credentials, so an owner token can neither read other tenants' tokens nor be
    told apart from a wrong one."""
    scheme, _, secret = authorization.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return False
    token = await app_state(current_app).storage.tokens.authenticate(secret.strip())
    return token is not None and token.is_admin


def requesting_ip(server: OAuthServer) -> str:
    """Who sent the request (the peer, or the client a proxy we trust forwards for)."""
    forwarded_for = request.headers.getlist("X-Forwarded-For")
    return client_address(request.remote_addr or "", forwarded_for, server.trusted_proxies)


@oauth_server.post("/register")
@answers(*public_answers.REGISTER)
@document_request(public_answers.ClientRegistration)
async def register() -> Response:
    server = authorization_server()
    await registration.admit(server, requesting_ip(server))
    return _json(await registration.register(server, await _json_body()), 201)


@oauth_server.get("/register/<client_id>")
@answers(*public_answers.REGISTRATION)
async def read_registration(client_id: str) -> Response:
    client = await registration.authorized_client(
        authorization_server(), client_id, _headers().get("authorization")
    )
    return _json(registration.client_information(authorization_server(), client))


@oauth_server.put("/register/<client_id>")
@answers(*public_answers.REGISTRATION)
async def update_registration(client_id: str) -> Response:
    server = authorization_server()
    client = await registration.authorized_client(
        server, client_id, _headers().get("authorization")
    )
    return _json(await registration.update(server, client, await _json_body()))


@oauth_server.delete("/register/<client_id>")
@answers(*public_answers.REGISTRATION_DELETED)
async def delete_registration(client_id: str) -> Response:
    server = authorization_server()
    client = await registration.authorized_client(
        server, client_id, _headers().get("authorization")
    )
    await registration.delete(server, client)
    return Response("", 204, NO_STORE)
