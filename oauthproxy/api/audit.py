"""After each answer of the admin API and the OAuth endpoints: log the step it was (see
`oauthproxy.logs.steps`) in the request log, with the token (admin writes) or OAuth client.

Reads only what is not secret: the `client_id` (of the form, the query, a Basic credential's
user part, or a registration's answer), `grant_type`, the consent decision, and the `error` of
a refusal. Never a token, code, secret, cookie or the body of a successful token answer.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote, unquote

from quart import Quart, Response, current_app, g, request

from oauthproxy.api.forms import FormRefused, bounded_form
from oauthproxy.api.state import app_state
from oauthproxy.logs.steps import Answered, step_of
from oauthproxy.oauth.client_address import client_address
from oauthproxy.proxy.headers import parse_networks

STEP_PATHS = frozenset({"/register", "/authorize", "/callback", "/consent", "/token", "/revoke"})


def install_audit(app: Quart) -> None:
    @app.after_request
    async def log_step(response: Response) -> Response:
        logger = app_state(current_app).requests
        # as sent (percent-encoded), not decoded: an anonymous `%0A` in it was a raw newline in
        # the event, a line of the client's choosing in `proxy-client log follow`
        path = quote(request.path, safe="/")
        if logger is None or not (path in STEP_PATHS or path.startswith("/api/v1/")):
            return response
        answered = Answered(
            method=request.method,
            path=path,
            status=response.status_code,
            client_id=await _client_id(response),
            grant_type=await _form_value("grant_type"),
            decision=await _form_value("decision"),
            location=response.headers.get("Location", ""),
            error=await _error(response),
        )
        step = step_of(answered)
        if step is None:
            return response
        token = getattr(g, "token", None)
        acted_by = getattr(g, "acted_by", None)  # the admin acting as `token` (X-Act-As-Token)
        user = token.name if token is not None else ""
        logger.event(
            step.name,
            status=step.status,
            client_ip=_client_ip(),
            user=f"{acted_by} as {user}" if acted_by and user else user,
            client_id=step.client_id,
            method=request.method,
            path=path,
            detail=step.detail,
        )
        return response


def _client_ip() -> str:
    settings = app_state(current_app).settings
    forwarded = request.headers.getlist("X-Forwarded-For")
    trusted = parse_networks(settings.trusted_proxies)
    return client_address(request.remote_addr or "", forwarded, trusted)


async def _form_value(name: str) -> str:
    if request.method != "POST" or request.mimetype != "application/x-www-form-urlencoded":
        return ""
    try:  # (bounded: an anonymous form of 500,000 fields stalled the loop here too)
        values = (await bounded_form()).get(name)
    except FormRefused:
        return ""
    return values[0][:64] if values else ""


async def _client_id(response: Response) -> str:
    found = request.args.get("client_id", "") or await _form_value("client_id")
    if not found:
        found = _basic_user()
    if not found and request.path == "/register" and response.status_code == 201:
        found = str((await _json(response)).get("client_id", ""))
    return found[:256]


def _basic_user() -> str:
    """The client id of an `Authorization: Basic` credential (its secret is never looked at)."""
    scheme, _, credential = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return ""
    try:
        decoded = base64.b64decode(credential, validate=True).decode()
    except ValueError:  # binascii.Error, UnicodeDecodeError, and a non-ASCII str's own
        return ""
    return unquote(decoded.partition(":")[0])


async def _error(response: Response) -> str:
    if response.status_code < 400:
        return ""
    return str((await _json(response)).get("error", ""))[:64]


async def _json(response: Response) -> dict[str, Any]:
    if response.mimetype != "application/json":
        return {}
    try:
        found = json.loads(await response.get_data())
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}
