"""Access-token verification: pure, fast, RS256 only. The data plane calls it on every request.

`TokenVerifier.verify` checks the header (`alg` exactly RS256, a known `kid`), the signature with
a cached key object, `iss`, `exp`/`nbf`/`iat` (with a small leeway) and the shape of every claim.
A token whose signature and claims checked out is remembered (bounded LRU), so the same token on
the next request costs a dictionary lookup and a clock comparison. Audience, scopes, allowlists
and revocation are the caller's decisions: they depend on the resource being protected.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from oauthproxy.oauth.jws import ALGORITHM, b64url_decode, signature_valid
from oauthproxy.oauth.signing import load_keys

if TYPE_CHECKING:
    from oauthproxy.settings import Settings
    from oauthproxy.storage import Storage

LEEWAY_SECONDS = 30.0
CACHE_SIZE = 4096
MAX_TOKEN_LENGTH = 16 * 1024
ACCEPTED_TYPES = frozenset({None, "JWT", "at+jwt", "application/at+jwt"})


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


class InvalidToken(Exception):
    """The token is refused; `reason` is short and safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class _Verified:
    claims: Claims
    not_before: float


class TokenVerifier:
    """Verifies tokens of one issuer against its public keys (`kid` → key)."""

    def __init__(self, issuer: str, keys: Mapping[str, RSAPublicKey]) -> None:
        self.issuer = issuer
        self._keys = dict(keys)
        self._verified: OrderedDict[str, _Verified] = OrderedDict()

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    def verify(self, token: str, *, now: float) -> Claims:
        verified = self._verified.get(token)
        if verified is None:
            verified = self._check(token)
            self._remember(token, verified)
        else:
            self._verified.move_to_end(token)
        if now > verified.claims.expires_at + LEEWAY_SECONDS:
            raise InvalidToken("expired")
        if now + LEEWAY_SECONDS < verified.not_before:
            raise InvalidToken("not yet valid")
        return verified.claims

    def _remember(self, token: str, verified: _Verified) -> None:
        self._verified[token] = verified
        if len(self._verified) > CACHE_SIZE:
            self._verified.popitem(last=False)

    def _check(self, token: str) -> _Verified:
        if len(token) > MAX_TOKEN_LENGTH or token.count(".") != 2:
            raise InvalidToken("malformed")
        header_part, payload_part, signature_part = token.split(".")
        header = _json_object(header_part)
        key = self._key_for(header)
        try:
            signature = b64url_decode(signature_part)
        except ValueError:
            raise InvalidToken("malformed") from None
        signing_input = f"{header_part}.{payload_part}".encode("ascii", "replace")
        if not signature_valid(key, signing_input, signature):
            raise InvalidToken("bad signature")
        payload = _json_object(payload_part)
        if payload.get("iss") != self.issuer:
            raise InvalidToken("wrong issuer")
        return _claims(payload)

    def _key_for(self, header: dict[str, Any]) -> RSAPublicKey:
        if header.get("alg") != ALGORITHM:
            raise InvalidToken("unsupported algorithm")
        if header.get("typ") not in ACCEPTED_TYPES or "crit" in header:
            raise InvalidToken("unsupported token type")
        kid = header.get("kid")
        if kid is None and len(self._keys) == 1:
            return next(iter(self._keys.values()))
        key = self._keys.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown key")
        return key


def _json_object(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError):
        raise InvalidToken("malformed") from None
    if not isinstance(value, dict):
        raise InvalidToken("malformed")
    return value


def _text(payload: dict[str, Any], name: str) -> str:
    value = payload.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidToken(f"bad claim: {name}")
    return value


def _optional_text(payload: dict[str, Any], name: str) -> str | None:
    return None if payload.get(name) is None else _text(payload, name)


def _number(payload: dict[str, Any], name: str) -> float:
    value = payload.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidToken(f"bad claim: {name}")
    return float(value)


def _strings(payload: dict[str, Any], name: str) -> tuple[str, ...]:
    value = payload.get(name, [])
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise InvalidToken(f"bad claim: {name}")
    return tuple(items)


def _claims(payload: dict[str, Any]) -> _Verified:
    subject = _text(payload, "sub")
    scope = payload.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("bad claim: scope")
    issued_at = _number(payload, "iat")
    not_before = _number(payload, "nbf") if "nbf" in payload else issued_at
    claims = Claims(
        subject=subject,
        username=_optional_text(payload, "username") or subject,
        email=_optional_text(payload, "email"),
        groups=_strings(payload, "groups"),
        scopes=frozenset(scope.split()),
        audience=_strings(payload, "aud"),
        client_id=_optional_text(payload, "azp") or _text(payload, "client_id"),
        jti=_text(payload, "jti"),
        expires_at=_number(payload, "exp"),
    )
    return _Verified(claims, max(issued_at, not_before))


async def load_verifier(storage: Storage, settings: Settings) -> TokenVerifier:
    """A verifier for this gateway's issuer and every public key it signs (or signed) with.

    Creates the shared signing key in Redis when none exists yet, so that the data plane and the
    authorization server of every replica agree on it."""
    keys = await load_keys(storage, settings)
    return TokenVerifier(settings.oauth_issuer_url, keys.public_keys)
