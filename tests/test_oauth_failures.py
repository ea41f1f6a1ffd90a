"""What must fail at the authorization server, over real HTTP: PKCE, code replay, stolen codes
and refresh tokens, refresh reuse, redirect URI mismatches and open redirects, the allowlists."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
import trio

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.serve import Ready
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from tests import oauth_helpers
from tests.github_standin import GitHubStandIn, GitHubUser
from tests.oauth_helpers import (
    REDIRECT_URI,
    FlowClient,
    pkce_pair,
    query_of,
    refused_link,
    start_gateway,
)

github = oauth_helpers.github
oauth_gateway = oauth_helpers.oauth_gateway
flow = oauth_helpers.flow


async def add_proxy(storage: Storage, hostname: str, **auth: object) -> None:
    target = {"hostname": hostname, "target_url": "http://127.0.0.1:9", **auth}
    await storage.proxies.create(ProxyTarget.model_validate(target))


def error_of(response: httpx.Response, status: int = 400) -> str:
    assert response.status_code == status, response.text
    error: str = response.json()["error"]
    return error


# --- PKCE --------------------------------------------------------------------------------------


async def test_missing_code_verifier(flow: FlowClient) -> None:
    client = await flow.register()
    authorized = await flow.authorize(client["client_id"])
    assert (
        error_of(await flow.exchange(client, authorized, code_verifier=None)) == "invalid_request"
    )


async def test_wrong_code_verifier(flow: FlowClient) -> None:
    client = await flow.register()
    authorized = await flow.authorize(client["client_id"])
    wrong, _challenge = pkce_pair()
    assert error_of(await flow.exchange(client, authorized, code_verifier=wrong)) == "invalid_grant"
    # the code is spent: the right verifier is too late now
    assert error_of(await flow.exchange(client, authorized)) == "invalid_grant"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "too-short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "mcp:read admin:everything"}, "invalid_scope"),
        ({"resource": "https://mcp.example.com/#fragment"}, "invalid_target"),
        ({"resource": [f"https://r{n}.example.com" for n in range(6)]}, "invalid_target"),
        ({"proxy_hostname": "nothing.example.com"}, "invalid_request"),
    ],
)
async def test_bad_authorize_requests_of_a_registered_client_get_a_page_linking_back(
    flow: FlowClient, oauth_gateway: Ready, params: dict[str, object], error: str
) -> None:
    """Anyone may register a client (RFC 7591), so an error found before the user did anything
    is not redirected automatically: the gateway would be an open redirector to whatever the
    registration named (RFC 9700 section 4.11.2). The page names the error and links back."""
    client = await flow.register()
    _verifier, challenge = pkce_pair()
    response = await flow.start(client["client_id"], **{"code_challenge": challenge, **params})
    link = refused_link(response)
    assert error in response.text
    assert "127.0.0.1:8765" in response.text  # where the link leads, named on the page
    assert link.startswith(REDIRECT_URI + "?")
    answer = query_of(link)
    assert answer["error"] == error
    assert answer["iss"] == oauth_gateway.api_url
    assert "code" not in answer


async def test_a_registered_client_cannot_use_the_gateway_as_an_open_redirector(
    flow: FlowClient,
) -> None:
    """The attack: register a client whose redirect URI is the attacker's site, then send
    people a link to the gateway's /authorize with a request that fails at once. The browser
    must not land on the attacker's site without the user choosing to go there."""
    phishing = "https://gateway-login.example.net/welcome"
    client = await flow.register(redirect_uris=[phishing], client_name="Gateway login")
    response = await flow.http.get(
        "/authorize",
        params={"client_id": client["client_id"], "response_type": "token", "state": "x"},
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "gateway-login.example.net" in response.text
    assert query_of(refused_link(response))["error"] == "unsupported_response_type"


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"code_challenge": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "mcp:read admin:everything"}, "invalid_scope"),
    ],
)
async def test_bad_authorize_requests_of_an_admin_client_go_back_at_once(
    flow: FlowClient, oauth_gateway: Ready, params: dict[str, object], error: str
) -> None:
    """A client the admin registered is trusted (as for consent): errors are redirected."""
    admin = {"Authorization": f"Bearer {oauth_gateway.admin_token.secret}"}
    body = {"name": "Ops tool", "redirect_uris": [REDIRECT_URI], "scope": "mcp:read"}
    registered = await flow.http.post("/api/v1/oauth/clients", json=body, headers=admin)
    assert registered.status_code == 201, registered.text
    _verifier, challenge = pkce_pair()
    response = await flow.start(
        registered.json()["client_id"], **{"code_challenge": challenge, "state": "s", **params}
    )
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    answer = query_of(location)
    assert (answer["error"], answer["state"], answer["iss"]) == (
        error,
        "s",
        oauth_gateway.api_url,
    )


# --- codes ---------------------------------------------------------------------------------------


async def test_code_replay_fails_and_revokes_what_the_code_gave(
    flow: FlowClient, storage: Storage
) -> None:
    client = await flow.register()
    authorized = await flow.authorize(client["client_id"])
    first = await flow.exchange(client, authorized)
    assert first.status_code == 200
    assert error_of(await flow.exchange(client, authorized)) == "invalid_grant"

    tokens = await storage.oauth.tokens_of_user("alice")
    assert [token.revoked for token in tokens] == [True]
    refreshed = await flow.token(
        client, grant_type="refresh_token", refresh_token=first.json()["refresh_token"]
    )
    assert error_of(refreshed) == "invalid_grant"


async def test_a_code_is_useless_to_another_client(flow: FlowClient) -> None:
    client = await flow.register()
    thief = await flow.register(client_name="Thief")
    authorized = await flow.authorize(client["client_id"])
    assert error_of(await flow.exchange(thief, authorized)) == "invalid_grant"


async def test_a_code_needs_its_client_secret(flow: FlowClient) -> None:
    client = await flow.register()
    authorized = await flow.authorize(client["client_id"])
    forged = {**client, "client_secret": "not-the-secret"}
    assert error_of(await flow.exchange(forged, authorized), 401) == "invalid_client"
    anonymous = {"client_id": client["client_id"]}
    assert error_of(await flow.exchange(anonymous, authorized), 401) == "invalid_client"


async def test_redirect_uri_must_match_at_the_token_endpoint(flow: FlowClient) -> None:
    client = await flow.register(redirect_uris=[REDIRECT_URI, "https://app.example.com/cb"])
    authorized = await flow.authorize(client["client_id"])
    other = "https://app.example.com/cb"
    assert error_of(await flow.exchange(client, authorized, redirect_uri=other)) == "invalid_grant"


async def test_resources_at_the_token_endpoint_must_have_been_authorized(
    flow: FlowClient,
) -> None:
    client = await flow.register()
    authorized = await flow.authorize(client["client_id"], resource="https://a.example.com")
    response = await flow.exchange(client, authorized, resource="https://b.example.com")
    assert error_of(response) == "invalid_target"


async def test_unsupported_grant_type(flow: FlowClient) -> None:
    client = await flow.register()
    response = await flow.token(client, grant_type="password", username="a", password="b")
    assert error_of(response) == "unsupported_grant_type"


# --- refresh tokens ----------------------------------------------------------------------------


async def test_a_refresh_token_is_useless_to_another_client(flow: FlowClient) -> None:
    client = await flow.register()
    thief = await flow.register(client_name="Thief")
    issued = await flow.tokens(client)
    stolen = await flow.token(
        thief, grant_type="refresh_token", refresh_token=issued["refresh_token"]
    )
    assert error_of(stolen) == "invalid_grant"
    # the rightful client still refreshes
    mine = await flow.token(
        client, grant_type="refresh_token", refresh_token=issued["refresh_token"]
    )
    assert mine.status_code == 200, mine.text


async def test_reusing_a_rotated_refresh_token_revokes_the_family(
    flow: FlowClient, storage: Storage
) -> None:
    client = await flow.register()
    issued = await flow.tokens(client)
    rotated = await flow.token(
        client, grant_type="refresh_token", refresh_token=issued["refresh_token"]
    )
    assert rotated.status_code == 200
    newest = rotated.json()["refresh_token"]

    reused = await flow.token(
        client, grant_type="refresh_token", refresh_token=issued["refresh_token"]
    )
    assert error_of(reused) == "invalid_grant"

    tokens = await storage.oauth.tokens_of_user("alice")
    assert len(tokens) == 2 and all(token.revoked for token in tokens)
    revoked = {entry.jti for entry in await storage.oauth.revocations_since("0")}
    assert revoked == {token.jti for token in tokens}
    # the newest refresh token of the family is dead too
    latest = await flow.token(client, grant_type="refresh_token", refresh_token=newest)
    assert error_of(latest) == "invalid_grant"
    introspected = await flow.http.post(
        "/introspect",
        data={
            "token": rotated.json()["access_token"],
            **{k: client[k] for k in ("client_id", "client_secret")},
        },
    )
    assert introspected.json() == {"active": False}


async def test_refresh_cannot_widen_scope(flow: FlowClient) -> None:
    client = await flow.register()
    issued = await flow.tokens(client, scope="mcp:read")
    wider = await flow.token(
        client,
        grant_type="refresh_token",
        scope="mcp:read mcp:write",
        refresh_token=issued["refresh_token"],
    )
    assert error_of(wider) == "invalid_scope"


# --- redirect URIs: never redirected to when wrong ----------------------------------------------


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        "http://127.0.0.1:8765/callback/../../evil",
        "http://127.0.0.1:8765/callback?next=https://evil.example.com",
        "http://127.0.0.1.evil.example.com:8765/callback",
        "http://localhost@evil.example.com/callback",
        "http://127.0.0.1:8765/Callback",
        "https://127.0.0.1:8765/callback",
        "//evil.example.com/callback",
    ],
)
async def test_a_redirect_uri_not_registered_is_never_redirected_to(
    flow: FlowClient, redirect_uri: str
) -> None:
    client = await flow.register()
    _verifier, challenge = pkce_pair()
    response = await flow.start(
        client["client_id"], redirect_uri=redirect_uri, code_challenge=challenge
    )
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "not one this client registered" in response.text


async def test_an_unknown_client_is_never_redirected(flow: FlowClient) -> None:
    response = await flow.start("mcp_nobody", code_challenge="x" * 43)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert "Unknown client" in response.text


@pytest.mark.parametrize(
    "uris",
    [
        ["http://example.com/callback"],
        ["https://app.example.com/cb#fragment"],
        ["javascript:alert(1)"],
        ["https://user:pass@app.example.com/cb"],
        [],
    ],
)
async def test_unsafe_redirect_uris_cannot_be_registered(flow: FlowClient, uris: list[str]) -> None:
    response = await flow.http.post("/register", json={"redirect_uris": uris})
    assert error_of(response) == "invalid_redirect_uri"


async def test_bodies_that_are_not_utf8_get_the_oauth_error_of_their_endpoint(
    flow: FlowClient,
) -> None:
    """Quart decodes a JSON body as UTF-8 before any handler sees it; the app-wide answer to
    that is the admin API's `invalid_json`, which is not what RFC 7591 and RFC 6749 endpoints
    document (schemathesis found it on POST /register)."""
    client = await flow.register()
    not_utf8 = {"content": b"4|\xff\xfe*\xc3(\xa0", "headers": {"Content-Type": "application/json"}}
    registered = await flow.http.post("/register", **not_utf8)  # type: ignore[arg-type]
    assert registered.status_code == 400
    assert set(registered.json()) == {"error", "error_description"}
    assert error_of(registered) == "invalid_client_metadata"
    updated = await flow.http.put(
        f"/register/{client['client_id']}",
        headers={
            "Authorization": f"Bearer {client['registration_access_token']}",
            "Content-Type": "application/json",
        },
        content=b"\xff",
    )
    assert updated.status_code == 400
    assert set(updated.json()) == {"error", "error_description"}
    token = await flow.http.post("/token", **not_utf8)  # type: ignore[arg-type]
    assert token.status_code == 400
    assert error_of(token) == "invalid_request"


# --- who may log in -----------------------------------------------------------------------------


async def test_a_github_user_outside_the_allowlist_is_refused(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    github.user = GitHubUser(666, "mallory", ["mallory@example.com"])
    client = await flow.register()
    callback = await flow.through_github(
        await flow.start(client["client_id"], code_challenge="x" * 43)
    )
    assert callback.status_code == 403
    assert "location" not in callback.headers
    assert "mallory is not in the allowlist of OAUTH_ALLOWED_GITHUB_USERS" in callback.text
    assert await storage.oauth.sessions() == []


async def test_an_empty_allowlist_allows_nobody_and_says_so(
    nursery: trio.Nursery,
    storage: Storage,
    make_settings: Callable[..., Settings],
    github: GitHubStandIn,
) -> None:
    gateway = await start_gateway(nursery, make_settings, github, oauth_allowed_github_users="")
    async with httpx.AsyncClient(base_url=gateway.api_url) as http:
        flow = FlowClient(http)
        client = await flow.register()
        callback = await flow.through_github(
            await flow.start(client["client_id"], code_challenge="x" * 43)
        )
    assert callback.status_code == 403
    assert "no GitHub user is allowed" in callback.text
    assert "OAUTH_ALLOWED_GITHUB_USERS" in callback.text


async def test_a_proxy_allowlist_decides_for_its_resource(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    await add_proxy(storage, "mcp.example.com", auth_enabled=True, auth_required_users=["bob"])
    client = await flow.register()
    refused = await flow.through_github(
        await flow.start(
            client["client_id"], code_challenge="x" * 43, resource="https://mcp.example.com/mcp"
        )
    )
    assert refused.status_code == 403
    assert "alice is not in the allowlist of proxy mcp.example.com" in refused.text

    github.user = GitHubUser(7, "Bob", ["bob@example.com"])
    allowed = await flow.authorize(client["client_id"], resource="https://mcp.example.com/mcp")
    assert allowed.code


async def test_proxy_email_and_group_rules(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    await add_proxy(
        storage,
        "team.example.com",
        auth_required_users=["*"],
        auth_required_emails=["*@acme.test"],
        auth_required_groups=["acme/ops"],
    )
    client = await flow.register()
    start = {"code_challenge": "x" * 43, "proxy_hostname": "team.example.com"}

    github.user = GitHubUser(8, "carol", ["carol@acme.test"], orgs=["acme"])
    no_team = await flow.through_github(await flow.start(client["client_id"], **start))
    assert no_team.status_code == 403 and "none of the groups" in no_team.text

    github.user = GitHubUser(
        8,
        "carol",
        ["carol@gmail.test", "carol@acme.test"],
        ["carol2@acme.test"],
        teams=[("acme", "ops")],
    )
    not_primary = await flow.through_github(await flow.start(client["client_id"], **start))
    assert not_primary.status_code == 403 and "no verified email" in not_primary.text

    github.user = GitHubUser(8, "carol", ["Carol@ACME.test"], teams=[("acme", "ops")])
    allowed = await flow.authorize(client["client_id"], proxy_hostname="team.example.com")
    assert allowed.code


async def test_a_proxy_without_users_falls_back_to_the_global_list(
    flow: FlowClient, github: GitHubStandIn, storage: Storage
) -> None:
    await add_proxy(storage, "mail.example.com", auth_required_emails=["*@example.com"])
    client = await flow.register()
    github.user = GitHubUser(9, "dave", ["dave@example.com"])
    refused = await flow.through_github(
        await flow.start(
            client["client_id"], code_challenge="x" * 43, proxy_hostname="mail.example.com"
        )
    )
    assert refused.status_code == 403
    assert "dave is not in the allowlist of proxy mail.example.com" in refused.text
    github.user = GitHubUser(1, "alice", ["alice@example.com"])
    assert (await flow.authorize(client["client_id"], proxy_hostname="mail.example.com")).code
