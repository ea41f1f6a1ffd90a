"""`TokenVerifier`: the pure per-request token check, table-driven, no I/O."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from oauthproxy.oauth import jws
from oauthproxy.oauth.signing import key_id
from oauthproxy.oauth.verify import LEEWAY_SECONDS, InvalidToken, TokenVerifier
from tests.jwt_text import b64url, segment

ISSUER = "https://auth.example.com"
NOW = 1_800_000_000.0
KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
KID = key_id(KEY.public_key())


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "github-1",
        "aud": ["https://mcp.example.com"],
        "azp": "mcp_client",
        "exp": int(NOW) + 600,
        "iat": int(NOW),
        "scope": "mcp:read mcp:write",
        "jti": "abc123",
        "username": "alice",
        "email": "alice@example.com",
        "groups": ["acme"],
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not ...}


def token(payload: dict[str, Any] | None = None, *, key: Any = KEY, kid: str = KID) -> str:
    return jws.sign(claims() if payload is None else payload, key, kid)


def hs256_with_public_key() -> str:
    """The classic algorithm-confusion forgery: HMAC keyed with the RSA public key's PEM."""
    public_pem = KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    signing_input = f"{segment({'alg': 'HS256', 'typ': 'JWT', 'kid': KID})}.{segment(claims())}"
    mac = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def with_header(header: dict[str, Any]) -> str:
    """Valid claims, signed with the right key, under a header of the test's choosing."""
    signing_input = f"{segment(header)}.{segment(claims())}"
    signed = KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64url(signed)}"


def unsigned() -> str:
    return f"{segment({'alg': 'none', 'kid': KID})}.{segment(claims())}."


def tampered() -> str:
    header, _payload, signature = token().split(".")
    return f"{header}.{segment(claims(scope='mcp:admin'))}.{signature}"


def verifier() -> TokenVerifier:
    return TokenVerifier(ISSUER, {KID: KEY.public_key()})


def test_a_valid_token_gives_its_claims() -> None:
    found = verifier().verify(token(), now=NOW)
    assert found.subject == "github-1"
    assert found.username == "alice"
    assert found.email == "alice@example.com"
    assert found.groups == ("acme",)
    assert found.scopes == frozenset({"mcp:read", "mcp:write"})
    assert found.audience == ("https://mcp.example.com",)
    assert found.client_id == "mcp_client"
    assert found.jti == "abc123"
    assert found.expires_at == NOW + 600


@pytest.mark.parametrize(
    ("make", "now", "reason"),
    [
        (lambda: token(claims(exp=int(NOW) - 120)), NOW, "expired"),
        (lambda: token(), NOW + 600 + LEEWAY_SECONDS + 1, "expired"),
        (lambda: token(claims(iss="https://evil.example.com")), NOW, "wrong issuer"),
        (lambda: token(claims(iss=ISSUER + "/")), NOW, "wrong issuer"),
        (hs256_with_public_key, NOW, "unsupported algorithm"),
        (unsigned, NOW, "unsupported algorithm"),
        (tampered, NOW, "bad signature"),
        (lambda: token(key=OTHER_KEY), NOW, "bad signature"),
        (lambda: token(kid="someone-else"), NOW, "unknown key"),
        (lambda: token(claims(nbf=int(NOW) + 300)), NOW, "not yet valid"),
        (lambda: token(claims(iat=int(NOW) + 300)), NOW, "not yet valid"),
        (lambda: token(claims(sub=...)), NOW, "bad claim: sub"),
        (lambda: token(claims(jti=...)), NOW, "bad claim: jti"),
        (lambda: token(claims(exp="soon")), NOW, "bad claim: exp"),
        (lambda: token(claims(exp=True)), NOW, "bad claim: exp"),
        (lambda: token(claims(aud=[1])), NOW, "bad claim: aud"),
        (lambda: token(claims(scope=["mcp:read"])), NOW, "bad claim: scope"),
        (lambda: token(claims(azp=..., client_id=...)), NOW, "bad claim: client_id"),
        (lambda: token(claims(exp=float("nan"))), NOW, "bad claim: exp"),
        (lambda: token(claims(iat=float("nan"))), NOW, "bad claim: iat"),
        (lambda: token(claims(iat=10**400)), NOW, "not yet valid"),
        (lambda: token(claims(exp=10**400)), NOW, "bad claim: exp"),
        (lambda: token(claims(nbf=-(10**400))), NOW, "bad claim: nbf"),
        (lambda: token(claims(nbf="later")), NOW, "bad claim: nbf"),
        (lambda: token(claims(sub="")), NOW, "bad claim: sub"),
        (lambda: token(claims(iss=...)), NOW, "wrong issuer"),
        (
            lambda: with_header({"alg": "RS256", "kid": KID, "crit": ["exp"]}),
            NOW,
            "unsupported token type",
        ),
        (
            lambda: with_header({"alg": "RS256", "kid": KID, "typ": "dpop+jwt"}),
            NOW,
            "unsupported token type",
        ),
        (lambda: with_header({"alg": "RS512", "kid": KID}), NOW, "unsupported algorithm"),
        (lambda: with_header({"alg": "PS256", "kid": KID}), NOW, "unsupported algorithm"),
        (lambda: f"{segment({'alg': 'RSA-OAEP', 'enc': 'A128GCM'})}.a.b.c.d", NOW, "malformed"),
        (lambda: "not-a-token", NOW, "malformed"),
        (lambda: "a.b.c", NOW, "malformed"),
        (lambda: token()[:-3] + "!!!", NOW, "bad signature"),
        (
            lambda: f"{segment({'alg': 'RS256'})}.{segment(claims())}.x" + "A" * 20000,
            NOW,
            "malformed",
        ),
    ],
)
def test_refused_tokens(make: Any, now: float, reason: str) -> None:
    with pytest.raises(InvalidToken) as refused:
        verifier().verify(make(), now=now)
    assert refused.value.reason == reason


def test_leeway_accepts_a_token_just_past_its_expiry() -> None:
    found = verifier().verify(token(), now=NOW + 600 + LEEWAY_SECONDS - 1)
    assert found.jti == "abc123"


def test_a_remembered_token_still_expires() -> None:
    check = verifier()
    valid = token()
    assert check.verify(valid, now=NOW).jti == "abc123"
    with pytest.raises(InvalidToken, match="expired"):
        check.verify(valid, now=NOW + 3600)


def test_single_string_audience_and_defaults() -> None:
    found = verifier().verify(
        token(claims(aud="https://one.example.com", groups=..., email=..., username=...)),
        now=NOW,
    )
    assert found.audience == ("https://one.example.com",)
    assert found.groups == ()
    assert found.email is None
    assert found.username == "github-1"


def test_a_token_without_kid_verifies_when_there_is_one_key() -> None:
    header = {"alg": "RS256", "typ": "JWT"}
    signing_input = f"{segment(header)}.{segment(claims())}"
    signed = KEY.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    assert verifier().verify(f"{signing_input}.{b64url(signed)}", now=NOW).jti


def test_keys_are_chosen_by_kid() -> None:
    other_kid = key_id(OTHER_KEY.public_key())
    both = TokenVerifier(ISSUER, {KID: KEY.public_key(), other_kid: OTHER_KEY.public_key()})
    assert both.verify(token(key=OTHER_KEY, kid=other_kid), now=NOW).jti == "abc123"
    with pytest.raises(InvalidToken, match="bad signature"):
        both.verify(token(key=OTHER_KEY, kid=KID), now=NOW)


def test_a_retired_keys_tokens_pass_only_until_its_deadline() -> None:
    """A key retired by a rotation is trusted until its deadline, whatever `exp` its tokens
    carry (whoever has the key can write any), and a token remembered before the deadline
    stops passing at it."""
    other_kid = key_id(OTHER_KEY.public_key())
    keys = {KID: KEY.public_key(), other_kid: OTHER_KEY.public_key()}
    deadline = NOW + 60
    check = TokenVerifier(ISSUER, keys, {other_kid: deadline})
    late = token(claims(exp=int(NOW) + 86_400), key=OTHER_KEY, kid=other_kid)
    assert check.verify(late, now=NOW).jti == "abc123"
    with pytest.raises(InvalidToken, match="expired"):
        check.verify(late, now=deadline + LEEWAY_SECONDS)  # remembered, and past the deadline
    fresh = TokenVerifier(ISSUER, keys, {other_kid: deadline})
    with pytest.raises(InvalidToken, match="expired"):
        fresh.verify(late, now=deadline + LEEWAY_SECONDS)
    assert fresh.verify(token(), now=deadline + LEEWAY_SECONDS).jti == "abc123"  # the new key


def test_a_revoked_token_stays_refused_through_the_leeway_past_its_expiry() -> None:
    """The data plane's guard forgot a revoked jti once its `exp` passed, but the verifier
    accepts a token until `exp` plus LEEWAY_SECONDS: a revoked (stolen) token the periodic
    sweep forgot in that window passed again, on every replica, until the leeway ended."""
    from oauthproxy.proxy.guard import Guard

    guard = Guard(verifier())
    stolen = token(claims(exp=int(NOW) + 600))
    assert guard.claims(stolen, now=NOW).jti == "abc123"
    guard.revoke("abc123", NOW + 600)
    for later in (NOW + 610, NOW + 600 + LEEWAY_SECONDS - 1):  # past exp, within the leeway
        guard.forget_expired(later)
        with pytest.raises(InvalidToken):
            guard.claims(stolen, now=later)
    guard.forget_expired(NOW + 600 + LEEWAY_SECONDS + 1)  # then it expires as any token
    with pytest.raises(InvalidToken, match="expired"):
        guard.claims(stolen, now=NOW + 600 + LEEWAY_SECONDS + 1)
