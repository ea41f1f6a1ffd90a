"""GitHub as the upstream identity provider: the login redirect, the code exchange, and who the
user is (login, numeric id, verified emails, organisations and teams).

Every URL is a setting (GITHUB_AUTHORIZE_URL, GITHUB_TOKEN_URL, GITHUB_API_URL) so GitHub
Enterprise and the tests' stand-in work the same way. The GitHub access token is used for these
few calls and then dropped: it is never stored or logged. Organisations and teams come a page at
a time: the `Link: <…>; rel="next"` pages are followed (on the API's own origin only, so the
token goes nowhere else) up to MAX_PAGES.
"""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx
import trio

from oauthproxy.models.oauth import UserIdentity
from oauthproxy.settings import Settings

log = logging.getLogger(__name__)

TIMEOUT_SECONDS = 15.0
PER_PAGE = "per_page=100"
MAX_PAGES = 10
"""Pages read of one list (1,000 organisations or teams); a longer list is cut there."""


class GitHubError(Exception):
    """The login at GitHub failed; the message is safe to show (it carries no secret)."""


@dataclass(frozen=True)
class GitHub:
    client_id: str
    client_secret: str
    authorize_url: str
    token_url: str
    api_url: str
    scopes: str
    tls: ssl.SSLContext | bool = True

    @classmethod
    def from_settings(cls, settings: Settings, tls: ssl.SSLContext | bool) -> GitHub | None:
        """None when GITHUB_CLIENT_ID or GITHUB_CLIENT_SECRET is unset."""
        if not settings.github_client_id or settings.github_client_secret is None:
            return None
        return cls(
            client_id=settings.github_client_id,
            client_secret=settings.github_client_secret.get_secret_value(),
            authorize_url=str(settings.github_authorize_url),
            token_url=str(settings.github_token_url),
            api_url=str(settings.github_api_url).rstrip("/"),
            scopes=settings.oauth_github_scopes,
            tls=tls,
        )

    def login_url(self, state: str, redirect_uri: str) -> str:
        query = urlencode(
            {
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": self.scopes,
                "state": state,
                "allow_signup": "false",
            }
        )
        separator = "&" if "?" in self.authorize_url else "?"
        return f"{self.authorize_url}{separator}{query}"

    async def identity(self, code: str, redirect_uri: str) -> UserIdentity:
        """Exchange the callback's code and read who logged in."""
        try:
            with trio.fail_after(TIMEOUT_SECONDS):
                async with httpx.AsyncClient(verify=self.tls, timeout=TIMEOUT_SECONDS) as client:
                    token = await self._exchange(client, code, redirect_uri)
                    return await _read_identity(client, self.api_url, token)
        except trio.TooSlowError:
            raise GitHubError("GitHub did not answer in time") from None
        except httpx.HTTPError as error:
            raise GitHubError(f"GitHub could not be reached: {type(error).__name__}") from None

    async def _exchange(self, client: httpx.AsyncClient, code: str, redirect_uri: str) -> str:
        response = await client.post(
            self.token_url,
            data={
                "client_id": self.client_id,
                "client_secret": self.client_secret,
                "code": code,
                "redirect_uri": redirect_uri,
            },
            headers={"Accept": "application/json"},
        )
        body = _json(response)
        token = body.get("access_token") if isinstance(body, dict) else None
        if response.status_code != 200 or not isinstance(token, str) or not token:
            reason = body.get("error") if isinstance(body, dict) else None
            raise GitHubError(f"GitHub refused the login code ({reason or response.status_code})")
        return token


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


async def _fetch(client: httpx.AsyncClient, url: str, token: str) -> httpx.Response | None:
    """A GitHub API GET, or None when GitHub says no (e.g. a scope is missing)."""
    response = await client.get(
        url,
        headers={"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json"},
    )
    if response.status_code != 200:
        log.warning("GitHub answered %s to %s", response.status_code, url)
        return None
    return response


async def _get(client: httpx.AsyncClient, url: str, token: str) -> Any:
    """The JSON of a GitHub API GET, or None when GitHub says no."""
    response = await _fetch(client, url, token)
    return None if response is None else _json(response)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _next_page(response: httpx.Response, api: str) -> str | None:
    """The `rel="next"` page of a list, when it is on the API's own origin."""
    url = response.links.get("next", {}).get("url")
    if url and _origin(url) != _origin(api):
        log.warning("GitHub's next page is on another origin; not following %s", url)
        return None
    return url


async def _get_list(client: httpx.AsyncClient, api: str, path: str, token: str) -> list[Any]:
    """Every item of a paginated GitHub list, up to MAX_PAGES pages. A page that cannot be read
    ends the list there (so a membership on a later page is missed, never invented)."""
    items: list[Any] = []
    url = f"{api}{path}?{PER_PAGE}"
    for _ in range(MAX_PAGES):
        response = await _fetch(client, url, token)
        page = None if response is None else _json(response)
        if response is None or not isinstance(page, list):
            return items
        items.extend(page)
        next_url = _next_page(response, api)
        if next_url is None:
            return items
        url = next_url
    log.warning("GitHub lists more than %d pages at %s; reading only those", MAX_PAGES, path)
    return items


async def _read_identity(client: httpx.AsyncClient, api: str, token: str) -> UserIdentity:
    user = await _get(client, f"{api}/user", token)
    if not isinstance(user, dict) or not isinstance(user.get("login"), str) or "id" not in user:
        raise GitHubError("GitHub did not say who logged in")
    primary, emails = _emails(await _get(client, f"{api}/user/emails?{PER_PAGE}", token), user)
    orgs = await _get_list(client, api, "/user/orgs", token)
    teams = await _get_list(client, api, "/user/teams", token)
    return UserIdentity(
        subject=f"github-{user['id']}",
        user_id=str(user["id"]),
        username=user["login"],
        email=primary,
        emails=emails,
        groups=_groups(orgs, teams),
    )


def _emails(listed: Any, user: dict[str, Any]) -> tuple[str | None, list[str]]:
    """The primary verified email and every verified one (the profile's public email when the
    list cannot be read: GitHub only lets verified emails be public)."""
    if not isinstance(listed, list):
        public = user.get("email")
        return (public, [public]) if isinstance(public, str) else (None, [])
    verified = [item for item in listed if isinstance(item, dict) and item.get("verified") is True]
    emails = [item["email"] for item in verified if isinstance(item.get("email"), str)]
    primary = next((item["email"] for item in verified if item.get("primary") is True), None)
    return (primary if isinstance(primary, str) else None), emails


def _groups(orgs: list[Any], teams: list[Any]) -> list[str]:
    found = [org["login"] for org in orgs if isinstance(org, dict) and "login" in org]
    for team in teams:
        if isinstance(team, dict) and isinstance(team.get("organization"), dict):
            found.append(f"{team['organization'].get('login')}/{team.get('slug')}")
    return list(dict.fromkeys(str(group) for group in found))
