"""Routes of the dashboard (`/dashboard/`) and the API docs (`/api/v1/docs`, `/api/v1/redoc`).

Every answer carries a Content-Security-Policy that allows scripts from this origin only (no
inline script anywhere), `X-Frame-Options: DENY` and `nosniff`. The docs pages also allow inline
styles, which Swagger UI and ReDoc set at run time; the dashboard does not.
"""

from __future__ import annotations

from pathlib import Path

import openapi_ui_bundles
from quart import Blueprint, Response, redirect, request, send_from_directory
from quart_schema import hide
from werkzeug.wrappers.response import Response as WerkzeugResponse

from oauthproxy.api.errors import ApiError

dashboard = Blueprint("dashboard", __name__)

STATIC = Path(__file__).parent / "static"
OWN_FILES = frozenset(
    {"dashboard.js", "dom.js", "proxies.js", "certificates.js", "routes.js", "gateway.js"}
    | {"logs.js", "swagger-init.js", "dashboard.css", "docs.css"}
)
"""Our own static files; the HTML pages are answered by their routes."""

VENDOR = {
    "swagger-ui": (
        openapi_ui_bundles.swagger_ui.static_path,
        frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "favicon-32x32.png"}),
    ),
    "redoc": (openapi_ui_bundles.redoc.static_path, frozenset({"redoc.standalone.js"})),
}
"""The third-party assets served, each from the package that ships it, by an explicit list."""

_COMMON_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DASHBOARD_POLICY = f"{_COMMON_POLICY}; style-src 'self'"
DOCS_POLICY = f"{_COMMON_POLICY}; style-src 'self' 'unsafe-inline'; worker-src 'self' blob:"
DOCS_PAGES = frozenset({"/api/v1/docs", "/api/v1/redoc"})


@dashboard.after_request
async def security_headers(response: Response) -> Response:
    docs = request.path.rstrip("/") in DOCS_PAGES
    response.headers["Content-Security-Policy"] = DOCS_POLICY if docs else DASHBOARD_POLICY
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin"
    if response.mimetype == "text/html":
        response.headers["Cache-Control"] = "no-store"
    return response


@dashboard.get("/")
@hide
async def home() -> WerkzeugResponse:
    return redirect("/dashboard/")


@dashboard.get("/dashboard/")
@hide
async def dashboard_page() -> Response:
    """The dashboard: sign in with a token, then proxies, certificates, routes and more."""
    return await _own_file("index.html")


@dashboard.get("/api/v1/docs")
@hide
async def swagger_ui() -> Response:
    """The API reference in Swagger UI, with "Try it out" (authorize with a bearer token)."""
    return await _own_file("swagger.html")


@dashboard.get("/api/v1/redoc")
@hide
async def redoc_ui() -> Response:
    """The API reference in ReDoc."""
    return await _own_file("redoc.html")


@dashboard.get("/dashboard/static/<name>")
@hide
async def static_file(name: str) -> Response:
    if name not in OWN_FILES:
        raise ApiError(404, "not_found", f"no dashboard file {name!r}", field="name")
    response = await _own_file(name)
    response.headers["Cache-Control"] = "no-cache"
    return response


@dashboard.get("/dashboard/vendor/<tool>/<name>")
@hide
async def vendor_file(tool: str, name: str) -> Response:
    directory, names = VENDOR.get(tool, (None, frozenset[str]()))
    if directory is None or name not in names:
        raise ApiError(404, "not_found", f"no asset {tool}/{name}", field="name")
    response = await send_from_directory(directory, name)
    response.headers["Cache-Control"] = "public, max-age=86400"
    return response


async def _own_file(name: str) -> Response:
    return await send_from_directory(STATIC, name)
