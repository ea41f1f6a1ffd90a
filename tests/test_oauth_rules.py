"""The authorization server's pure rules, table-driven: redirect URI matching (RFC 8252),
PKCE S256, resource indicators, scopes and login allowlists."""

from __future__ import annotations

import pytest

from oauthproxy.models.oauth import UserIdentity
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth import pkce
from oauthproxy.oauth.allowlist import AccessPolicy
from oauthproxy.oauth.errors import OAuthError
from oauthproxy.oauth.parameters import canonical_resource, granted_scope, narrowed_resources
from oauthproxy.oauth.redirect_uris import ascii_host, matches, registration_problem

LOOPBACK = "http://127.0.0.1/callback"


@pytest.mark.parametrize(
    ("registered", "presented", "expected"),
    [
        ("https://app.example.com/cb", "https://app.example.com/cb", True),
        ("https://app.example.com/cb", "https://app.example.com/cb/", False),
        ("https://app.example.com/cb", "https://app.example.com:8443/cb", False),
        ("https://app.example.com/cb", "https://APP.example.com/cb", False),
        ("https://app.example.com/cb?a=1", "https://app.example.com/cb?a=2", False),
        (LOOPBACK, "http://127.0.0.1:50123/callback", True),
        ("http://127.0.0.1:3000/callback", "http://127.0.0.1:50123/callback", True),
        ("http://[::1]/callback", "http://[::1]:8080/callback", True),
        ("http://localhost/callback", "http://localhost:9999/callback", True),
        (LOOPBACK, "http://localhost:50123/callback", False),
        (LOOPBACK, "http://127.0.0.1:50123/other", False),
        (LOOPBACK, "https://127.0.0.1:50123/callback", False),
        (LOOPBACK, "http://127.0.0.1:50123/callback#x", False),
        (LOOPBACK, "http://user@127.0.0.1:50123/callback", False),
        ("https://app.example.com/cb", "https://app.example.com:99999/cb", False),
    ],
)
def test_redirect_uri_matching(registered: str, presented: str, expected: bool) -> None:
    assert matches(registered, presented) is expected


@pytest.mark.parametrize(
    ("uri", "allowed"),
    [
        ("https://app.example.com/cb", True),
        ("http://127.0.0.1:8080/cb", True),
        ("http://localhost/cb", True),
        ("http://[::1]:1/cb", True),
        ("http://app.example.com/cb", False),
        ("https://app.example.com/cb#frag", False),
        ("custom.scheme:/cb", False),
        ("/relative", False),
        ("https://user:pw@app.example.com/", False),
        ("https://p\u0430ypal.example/cb", True),  # IDNA: shown as xn--pypal-4ve.example
        ("https://203.0.113.9/cb", True),
        ("https://evil.example\uff3cpaypal.com/cb", False),  # IDNA makes it evil.example\\...
        ("https://evil.example\\paypal.com/cb", False),
        ("https://evil%2eexample/cb", False),
        ("https://evil.example\uff05paypal.com/cb", False),  # a fullwidth %
        ("https://a_b.example/cb", False),
    ],
)
def test_registrable_redirect_uris(uri: str, allowed: bool) -> None:
    assert (registration_problem(uri) is None) is allowed


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("app.example.com", "app.example.com"),
        ("p\u0430ypal.example", "xn--pypal-4ve.example"),
        ("evil.example\uff3cpaypal.com", "evil.example%5Cpaypal.com"),
        ("evil.example\\paypal.com", "evil.example%5Cpaypal.com"),
        ("a b", "a%20b"),
    ],
)
def test_a_host_is_shown_with_only_letters_digits_hyphens_and_dots(host: str, shown: str) -> None:
    """The pages name a redirect host by `ascii_host`: a character a browser reads as the end of
    the host (a `\\`, which IDNA makes of U+FF3C) is shown percent-encoded, never as itself."""
    assert ascii_host(host) == shown


def test_pkce_s256_rfc7636_example() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce.s256(verifier) == challenge
    assert pkce.verifier_matches(verifier, challenge)
    assert not pkce.verifier_matches(verifier[:-1] + "Y", challenge)
    assert not pkce.verifier_matches("short", pkce.s256("short"))
    assert pkce.valid_challenge(challenge) and not pkce.valid_challenge(challenge + "=")


@pytest.mark.parametrize(
    ("uri", "canonical"),
    [
        ("HTTPS://MCP.Example.com/MCP", "https://mcp.example.com/MCP"),
        ("https://mcp.example.com", "https://mcp.example.com"),
        ("http://localhost:8080/mcp", "http://localhost:8080/mcp"),
    ],
)
def test_canonical_resources(uri: str, canonical: str) -> None:
    assert canonical_resource(uri) == canonical


@pytest.mark.parametrize(
    "uri", ["mcp.example.com", "ftp://x.example.com/", "https://x.example.com/#f", "https://:1/"]
)
def test_invalid_resources(uri: str) -> None:
    with pytest.raises(OAuthError) as refused:
        canonical_resource(uri)
    assert refused.value.error == "invalid_target"


def test_scopes_and_resources_only_narrow() -> None:
    assert granted_scope(None, "mcp:read mcp:write") == "mcp:read mcp:write"
    assert granted_scope("mcp:write mcp:write", "mcp:read mcp:write") == "mcp:write"
    with pytest.raises(OAuthError, match="mcp:admin"):
        granted_scope("mcp:read mcp:admin", "mcp:read mcp:write")
    assert narrowed_resources([], ["https://a"]) == ["https://a"]
    assert narrowed_resources(["https://a"], ["https://a", "https://b"]) == ["https://a"]
    with pytest.raises(OAuthError):
        narrowed_resources(["https://c"], ["https://a"])


ALICE = UserIdentity(
    subject="github-1",
    user_id="1",
    username="Alice",
    email="alice@example.com",
    emails=["alice@example.com", "alice@acme.test"],
    groups=["acme", "acme/ops"],
)


def proxy(**auth: object) -> ProxyTarget:
    return ProxyTarget.model_validate(
        {"hostname": "mcp.example.com", "target_url": "http://127.0.0.1:1", **auth}
    )


@pytest.mark.parametrize(
    ("policy", "refused_because"),
    [
        (AccessPolicy.global_default("*"), None),
        (AccessPolicy.global_default("bob, alice"), None),
        (AccessPolicy.global_default(""), "no GitHub user is allowed"),
        (AccessPolicy.global_default("bob"), "not in the allowlist of OAUTH_ALLOWED_GITHUB_USERS"),
        (AccessPolicy.for_proxy(proxy(), "alice"), None),
        (AccessPolicy.for_proxy(proxy(), "bob"), "allowlist of proxy mcp.example.com"),
        (AccessPolicy.for_proxy(proxy(auth_required_users=["ALICE"]), ""), None),
        (AccessPolicy.for_proxy(proxy(auth_required_users=[]), "*"), "no GitHub user"),
        (
            AccessPolicy.for_proxy(
                proxy(auth_required_users=["*"], auth_required_emails=["*@example.com"]), ""
            ),
            None,
        ),
        (
            AccessPolicy.for_proxy(
                proxy(auth_required_users=["*"], auth_required_emails=["*@acme.test"]), ""
            ),
            "no verified email",
        ),
        (
            AccessPolicy.for_proxy(
                proxy(auth_required_users=["*"], auth_required_groups=["ACME/OPS"]), ""
            ),
            None,
        ),
        (
            AccessPolicy.for_proxy(
                proxy(auth_required_users=["*"], auth_required_groups=["other"]), ""
            ),
            "none of the groups",
        ),
    ],
)
def test_login_allowlists(policy: AccessPolicy, refused_because: str | None) -> None:
    refusal = policy.refusal(ALICE)
    if refused_because is None:
        assert refusal is None
    else:
        assert refusal is not None and refused_because in refusal
