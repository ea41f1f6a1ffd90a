"""Access-token verification: pure, fast, RS256 only. The data plane calls it on every request.

`TokenVerifier.verify` decodes the JWS with joserfc (Authlib's JOSE library) through
`jws.REGISTRY`, which allows RS256 and nothing else, choosing the key by `kid`; the header's `typ`
must be an access token's, and `crit` is refused. joserfc's claims registry then checks `iss`
(exactly this issuer), `exp`, `nbf` and `iat` (with a small leeway) and that `sub` and `jti` are
there; the shapes of our own claims are checked here. A token that checked out is remembered
(bounded LRU; dropped when found expired), so the same token on the next request costs a
dictionary lookup and a clock comparison. Audience, scopes, allowlists and revocation are the
caller's decisions: they depend on the resource being protected.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from joserfc import jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    JoseError,
    MissingCritHeaderError,
    UnsupportedAlgorithmError,
    UnsupportedHeaderError,
)
from joserfc.jwk import GuestProtocol, RSAKey
from joserfc.jwt import ClaimsOption, JWTClaimsRegistry

from oauthproxy.oauth.jws import REGISTRY, jwk
from oauthproxy.oauth.signing import load_keys

if TYPE_CHECKING:
    from oauthproxy.settings import Settings
    from oauthproxy.storage import Storage

LEEWAY_SECONDS = 30
CACHE_SIZE = 4096
MAX_TOKEN_LENGTH = 16 * 1024
ACCEPTED_TYPES = frozenset({None, "JWT", "at+jwt", "application/at+jwt"})
REQUIRED: ClaimsOption = {"essential": True}


@dataclass(frozen=True)
class Claims:
    subject: str
    username: str
    email: str | None
    groups: tuple[str, ...]
    scopes: frozenset[str]
    audience: tuple[str, ...]
    client_id: str
    jti: str
    expires_at: float
    authenticated_at: float | None = None
    """`auth_time`: the login, when GitHub gave the `email` and `groups` (None: not said)."""


class InvalidToken(Exception):
    """The token is refused; `reason` is short and safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Verified:
    claims: Claims
    not_before: float
    usable_until: float
    """Its `exp`, or its key's deadline when that comes first."""


class TokenVerifier:
    """Verifies tokens of one issuer against its public keys (`kid` → key)."""

    def __init__(
        self,
        issuer: str,
        keys: Mapping[str, RSAPublicKey],
        deadlines: Mapping[str, float] | None = None,
    ) -> None:
        self.issuer = issuer
        self._keys = {kid: jwk(key) for kid, key in keys.items()}
        self._deadlines = dict(deadlines or {})
        """Keys (a retired one) whose tokens pass only until then, whatever their `exp`."""
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, token: str, *, now: float) -> Claims:
        verified = self._verified.get(token)
        if verified is None:
            verified = self._check(token, now)
            self._remember(token, verified)
            return verified.claims
        if now - LEEWAY_SECONDS >= verified.usable_until:
            del self._verified[token]
            raise InvalidToken("expired")
        if now + LEEWAY_SECONDS < verified.not_before:
            raise InvalidToken("not yet valid")
        self._verified.move_to_end(token)
        return verified.claims

    def _remember(self, token: str, verified: _Verified) -> None:
        self._verified[token] = verified
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    def _check(self, token: str, now: float) -> _Verified:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("malformed")
        try:
            decoded = jwt.decode(token, self._key_for, registry=REGISTRY)
        except UnsupportedAlgorithmError:
            raise InvalidToken("unsupported algorithm") from None
        except (UnsupportedHeaderError, MissingCritHeaderError):
            raise InvalidToken("unsupported token type") from None
        except BadSignatureError:
            raise InvalidToken("bad signature") from None
        except (JoseError, ValueError, TypeError):
            raise InvalidToken("malformed") from None
        payload = decoded.claims
        deadline = self._deadlines.get(str(decoded.header.get("kid")))
        if deadline is not None and now - LEEWAY_SECONDS >= deadline:
            raise InvalidToken("expired")  # signed with a key retired since
        registry = JWTClaimsRegistry(
            now=int(now),
            leeway=LEEWAY_SECONDS,
            iss={"essential": True, "value": self.issuer},
            sub=REQUIRED,
            jti=REQUIRED,
            exp=REQUIRED,
            iat=REQUIRED,
        )
        try:
            registry.validate(payload)
        except ExpiredTokenError:
            raise InvalidToken("expired") from None
        except ClaimError as error:
            raise InvalidToken(_claim_problem(error.claim, payload)) from None
        verified = _claims(payload)
        if deadline is not None and deadline < verified.usable_until:
            return replace(verified, usable_until=deadline)
        return verified

    def _key_for(self, token: GuestProtocol) -> RSAKey:
        header = token.headers()
        if header.get("typ") not in ACCEPTED_TYPES or "crit" in header:
            raise InvalidToken("unsupported token type")
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key")
        return key


def _claim_problem(claim: str, payload: dict[str, Any]) -> str:
    """The reason for a registered claim joserfc refused."""
    if claim == "iss":
        return "wrong issuer"
    if claim in ("nbf", "iat") and _numeric_date(payload.get(claim)):
        return "not yet valid"
    return f"bad claim: {claim}"


def _numeric_date(value: object) -> bool:
    """A JSON number that is a time: an int (any size), or a finite float; never a bool."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"bad claim: {name}")
    return value


def _optional_text(payload: dict[str, Any], name: str) -> str | None:
    return None if payload.get(name) is None else _text(payload, name)


def _strings(payload: dict[str, Any], name: str) -> tuple[str, ...]:
    value = payload.get(name, [])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidToken(f"bad claim: {name}")
    return tuple(items)


def _claims(payload: dict[str, Any]) -> _Verified:
    """Our claims' shapes (joserfc checked the registered ones: `sub`, `jti`, the times)."""
    scope = payload.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("bad claim: scope")
    subject: str = payload["sub"]
    issued_at = _seconds(payload, "iat")
    not_before = _seconds(payload, "nbf") if "nbf" in payload else issued_at
    claims = Claims(
        subject=subject,
        username=_optional_text(payload, "username") or subject,
        email=_optional_text(payload, "email"),
        groups=_strings(payload, "groups"),
        scopes=frozenset(scope.split()),
        audience=_strings(payload, "aud"),
        client_id=_optional_text(payload, "azp") or _text(payload, "client_id"),
        jti=payload["jti"],
        expires_at=_seconds(payload, "exp"),
        authenticated_at=_seconds(payload, "auth_time") if "auth_time" in payload else None,
    )
    return _Verified(claims, max(issued_at, not_before), claims.expires_at)


def _seconds(payload: dict[str, Any], name: str) -> float:
    """A time claim joserfc accepted as a number, as a float (an int past float's range is not)."""
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidToken(f"bad claim: {name}")
    try:
        return float(value)
    except OverflowError:
        raise InvalidToken(f"bad claim: {name}") from None


async def load_verifier(storage: Storage, settings: Settings) -> TokenVerifier:
    """A verifier for this gateway's issuer and every public key it signs (or signed) with.

    Creates the shared signing key in Redis when none exists yet, so that the data plane and the
    authorization server of every replica agree on it."""
    keys = await load_keys(storage, settings)
    return TokenVerifier(settings.oauth_issuer_url, keys.public_keys, keys.deadlines)
