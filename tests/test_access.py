"""The protected proxy's access decision, table-driven and without I/O."""

from __future__ import annotations

import time

import pytest

from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.oauth.verify import Claims
from oauthproxy.proxy.access import DECISIONS, AccessPolicy, Allow, Deny, authorize, challenge
from oauthproxy.proxy.protect import bearer_token

RESOURCE = "https://mcp.example.com"


def policy(global_users: str = "*", **fields: object) -> AccessPolicy:
    target = ProxyTarget.model_validate(
        {"hostname": "mcp.example.com", "target_url": "http://127.0.0.1:1", **fields}
    )
    return AccessPolicy.of(target, issuer="https://auth.example.com/", global_users=global_users)


def claims(**fields: object) -> Claims:
    values: dict[str, object] = {
        "subject": "github-1",
        "username": "Alice",
        "email": "alice@example.com",
        "groups": ("staff",),
        "scopes": frozenset({"mcp:read"}),
        "audience": (RESOURCE,),
        "client_id": "c",
        "jti": "j",
        "expires_at": 0.0,
    }
    values.update(fields)
    return Claims(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("the_policy", "the_claims", "expected"),
    [
        (policy(), claims(), 200),
        (policy(), claims(audience=("https://other.example.com",)), 401),
        (policy(), claims(audience=(RESOURCE + "/mcp",)), 200),
        (policy(auth_allowed_audiences=["urn:x"]), claims(audience=("urn:x",)), 200),
        (policy(auth_required_users=["alice"]), claims(), 200),
        (policy(auth_required_users=["bob"]), claims(), 403),
        (policy(global_users="bob,carol"), claims(), 403),
        (policy(global_users=""), claims(), 403),
        (policy(auth_required_emails=["*@example.com"]), claims(), 200),
        (policy(auth_required_emails=["*@corp.example"]), claims(), 403),
        (policy(auth_required_groups=["staff", "ops"]), claims(), 200),
        (policy(auth_required_groups=["ops"]), claims(), 403),
        (policy(auth_required_groups=["STAFF"]), claims(), 200),
        (policy(auth_allowed_scopes=["mcp:read"]), claims(), 200),
        (policy(auth_allowed_scopes=["mcp:admin"]), claims(), 403),
    ],
)
def test_authorize(the_policy: AccessPolicy, the_claims: Claims, expected: int) -> None:
    decision = authorize(the_policy, the_claims, RESOURCE)
    status = 200 if isinstance(decision, Allow) else decision.status
    assert status == expected


def aged(max_age: int, **fields: object) -> AccessPolicy:
    target = ProxyTarget.model_validate(
        {"hostname": "mcp.example.com", "target_url": "http://127.0.0.1:1", **fields}
    )
    return AccessPolicy.of(
        target, issuer="https://auth.example.com/", global_users="*", identity_max_age=max_age
    )


@pytest.mark.parametrize(
    ("the_policy", "login_ago", "expected"),
    [
        (aged(3600, auth_required_groups=["staff"]), 60, 200),
        (aged(3600, auth_required_groups=["staff"]), 7200, 401),
        (aged(3600, auth_required_emails=["*@example.com"]), 7200, 401),
        (aged(3600, auth_required_groups=["staff"]), None, 200),  # signed before `auth_time`
        (aged(3600, auth_required_users=["alice"]), 7200, 200),  # names: nothing to go stale
        (aged(0, auth_required_groups=["staff"]), 10**6, 200),  # 0: no limit
    ],
)
def test_a_login_older_than_the_max_age_passes_no_email_or_group_rule(
    the_policy: AccessPolicy, login_ago: int | None, expected: int
) -> None:
    login = None if login_ago is None else time.time() - login_ago
    decision = authorize(the_policy, claims(authenticated_at=login), RESOURCE)
    assert (200 if isinstance(decision, Allow) else decision.status) == expected


def test_identity_headers_use_the_prefix() -> None:
    decision = authorize(policy(auth_header_prefix="X-User-"), claims(), RESOURCE)
    assert isinstance(decision, Allow)
    assert (b"x-user-user-name", b"Alice") in decision.headers
    assert authorize(policy(auth_pass_headers=False), claims(), RESOURCE) == Allow([])


def test_a_remembered_decision_is_bound_to_its_resource() -> None:
    """The same token, allowed at its own origin, is still refused at another one once its
    decision is remembered (and the other way round)."""
    the_policy, the_claims = policy(), claims()
    assert isinstance(authorize(the_policy, the_claims, RESOURCE), Allow)
    elsewhere = authorize(the_policy, the_claims, "https://other.example.com")
    assert isinstance(elsewhere, Deny) and elsewhere.status == 401
    assert isinstance(authorize(the_policy, the_claims, RESOURCE), Allow)


def test_remembered_decisions_are_bounded() -> None:
    the_policy = policy()
    for number in range(DECISIONS + 10):
        assert isinstance(authorize(the_policy, claims(jti=f"j{number}"), RESOURCE), Allow)
    assert len(the_policy._decisions) <= DECISIONS


def test_identity_headers_cannot_carry_line_breaks() -> None:
    forged = claims(username="eve\r\nX-Admin: 1", email="e@x.org\n\x00")
    decision = authorize(policy(), forged, RESOURCE)
    assert isinstance(decision, Allow)
    values = dict(decision.headers)
    assert values[b"x-auth-user-name"] == b"eve  X-Admin: 1"
    assert values[b"x-auth-email"] == b"e@x.org  "


def test_challenge_names_metadata_and_scope() -> None:
    value = challenge(
        policy(), RESOURCE, Deny(403, "insufficient_scope", "need admin", "mcp:admin")
    )
    assert f'resource_metadata="{RESOURCE}/.well-known/oauth-protected-resource"' in value
    assert 'as_uri="https://auth.example.com/.well-known/oauth-authorization-server"' in value
    assert 'error="insufficient_scope"' in value
    assert 'scope="mcp:admin"' in value


@pytest.mark.parametrize(
    ("value", "token"),
    [
        (b"Bearer abc.def", "abc.def"),
        (b"bearer   abc.def  ", "abc.def"),
        (b"BEARER abc", "abc"),
        (b"Bearer ", None),
        (b"Basic dXNlcjpwYXNz", None),
        (b"Bearerabc", None),
    ],
)
def test_bearer_token(value: bytes, token: str | None) -> None:
    assert bearer_token([(b"host", b"h"), (b"authorization", value)]) == token
    assert bearer_token([(b"host", b"h")]) is None
