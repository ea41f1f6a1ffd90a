"""What the OAuth tests share: a gateway wired to the GitHub stand-in, and a client that walks the
browser part of the authorization code flow headlessly (authorize → GitHub → callback → consent).

A test module uses the fixtures by naming them at module level (pytest finds fixtures by the
attribute name): `github = oauth_helpers.github`, and so on."""

from __future__ import annotations

import base64
import hashlib
import html
import re
import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import trio

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests.conftest import free_port
from tests.github_standin import GitHubStandIn, serve_github_standin

REDIRECT_URI = "http://127.0.0.1:8765/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query_of(location: str) -> dict[str, str]:
    return {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}


def refused_link(response: httpx.Response) -> str:
    """Where the page that refuses an untrusted client's authorization request links to (the
    client's redirect URI with the error): the page is a 400 and no redirect."""
    assert response.status_code == 400, (response.status_code, response.headers.get("location"))
    assert "location" not in response.headers
    [link] = re.findall(r'<a href="([^"]+)"', response.text)
    return html.unescape(link)


async def start_gateway(
    nursery: trio.Nursery,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
    **overrides: Any,
) -> Ready:
    """A gateway whose issuer is its own admin API URL and whose GitHub is the stand-in."""
    port = free_port()
    values: dict[str, Any] = {
        "api_port": port,
        "oauth_issuer": f"http://127.0.0.1:{port}",
        "github_client_id": github.client_id,
        "github_client_secret": github.client_secret,
        "github_authorize_url": f"{github.url}/login/oauth/authorize",
        "github_token_url": f"{github.url}/login/oauth/access_token",
        "github_api_url": github.url,
        "oauth_allowed_github_users": "alice",
    }
    values.update(overrides)
    settings = make_settings(**values)
    ready: Ready = await nursery.start(
        lambda task_status: serve(settings, handle_signals=False, task_status=task_status)
    )
    return ready


@pytest.fixture
async def github(nursery: trio.Nursery) -> GitHubStandIn:
    """The GitHub stand-in, logging everyone in as `alice` unless a test changes its user."""
    standin = GitHubStandIn()
    await nursery.start(serve_github_standin, standin)
    return standin


@pytest.fixture
async def oauth_gateway(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> Ready:
    """A gateway on an emptied Redis, wired to the stand-in, allowing the GitHub user alice.

    Its resource validation is not strict: the flow tests name MCP servers
    (`https://mcp.example.com`) that no proxy of theirs serves. `start_gateway` keeps the strict
    default, and tests/test_oauth_resource_indicators.py checks both settings."""
    return await start_gateway(nursery, make_settings, github, mcp_resource_validation_strict=False)


@pytest.fixture
async def flow(oauth_gateway: Ready) -> AsyncIterator[FlowClient]:
    async with httpx.AsyncClient(base_url=oauth_gateway.api_url) as http:
        yield FlowClient(http)


@dataclass
class Authorized:
    code: str
    state: str
    iss: str
    verifier: str


class FlowClient:
    """Speaks to the gateway's OAuth endpoints like an MCP client and its user's browser."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def register(self, **metadata: Any) -> dict[str, Any]:
        body = {
            "client_name": "Test Client",
            "redirect_uris": [REDIRECT_URI],
            "grant_types": ["authorization_code", "refresh_token"],
            **metadata,
        }
        response = await self.http.post("/register", json=body)
        assert response.status_code == 201, response.text
        registered: dict[str, Any] = response.json()
        return registered

    async def start(self, client_id: str, **params: Any) -> httpx.Response:
        """GET /authorize (with a fresh PKCE pair unless `code_challenge` is given)."""
        query = {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "state": secrets.token_hex(8),
            "code_challenge_method": "S256",
            **params,
        }
        return await self.http.get(
            "/authorize", params={k: v for k, v in query.items() if v is not None}
        )

    async def through_github(self, response: httpx.Response) -> httpx.Response:
        """Follow /authorize's redirect to the stand-in and back to /callback."""
        assert response.status_code == 302, response.text
        at_github = await self.http.get(response.headers["location"])
        assert at_github.status_code == 302, at_github.text
        return await self.http.get(at_github.headers["location"])

    async def consent(self, page: httpx.Response, decision: str = "approve") -> httpx.Response:
        form = dict(re.findall(r'name="(request|csrf_token)" value="([^"]+)"', page.text))
        return await self.http.post("/consent", data={**form, "decision": decision})

    async def approve(self, start: httpx.Response) -> httpx.Response:
        """The browser from /authorize's answer on: GitHub, the callback, and the consent page
        (approved) when there is one. The last answer: the redirect to the client (302 without
        consent, 303 after it), or the page that stopped the login."""
        callback = await self.through_github(start)
        location = callback.headers.get("location", "")
        if callback.status_code != 302 or not location.startswith("/consent"):
            return callback
        page = await self.http.get(location)
        assert page.status_code == 200, page.text
        return await self.consent(page)

    async def authorize(self, client_id: str, **params: Any) -> Authorized:
        """The whole browser part, approving the consent page; the code the client receives."""
        verifier, challenge = pkce_pair()
        params.setdefault("code_challenge", challenge)
        state = params.setdefault("state", secrets.token_hex(8))
        reached = await self.approve(await self.start(client_id, **params))
        assert reached.status_code in (302, 303), reached.text
        answer = query_of(reached.headers["location"])
        assert answer["state"] == state
        return Authorized(answer["code"], answer["state"], answer["iss"], verifier)

    async def token(self, client: dict[str, Any], **form: Any) -> httpx.Response:
        """POST /token as `client` (client_secret_post when it has a secret)."""
        body = {"client_id": client["client_id"], **form}
        if "client_secret" in client:
            body["client_secret"] = client["client_secret"]
        return await self.http.post("/token", data={k: v for k, v in body.items() if v is not None})

    async def exchange(
        self, client: dict[str, Any], authorized: Authorized, **form: Any
    ) -> httpx.Response:
        """POST /token with the code (form values override the flow's own)."""
        body = {
            "grant_type": "authorization_code",
            "code": authorized.code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": authorized.verifier,
            **form,
        }
        return await self.token(client, **body)

    async def tokens(self, client: dict[str, Any], **params: Any) -> dict[str, Any]:
        """Authorize and exchange: the token response of a successful flow."""
        response = await self.exchange(client, await self.authorize(client["client_id"], **params))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body
