"""Compact JWS through joserfc, Authlib's JOSE library, with the algorithm pinned to RS256.

Authlib 1.7+ deprecates its own `authlib.jose` ("please use joserfc instead", removed in 2.0);
joserfc is the JOSE implementation of the Authlib project and a dependency of authlib itself.
`REGISTRY` allows RS256 and nothing else, for signing and verifying alike: a token whose header
names `none`, `HS256` (the public-key-as-HMAC-secret forgery) or any other algorithm is refused
before a key is chosen.
"""

from __future__ import annotations

from typing import Any

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from joserfc import jwt
from joserfc.jwk import RSAKey
from joserfc.jws import JWSRegistry

ALGORITHM = "RS256"
REGISTRY = JWSRegistry(algorithms=[ALGORITHM])


def jwk(key: RSAPrivateKey | RSAPublicKey) -> RSAKey:
    return RSAKey.import_key(key)


def sign(claims: dict[str, Any], key: RSAPrivateKey, kid: str, *, typ: str = "at+jwt") -> str:
    """An RS256 JWS over `claims` with `kid` in its header."""
    header = {"alg": ALGORITHM, "typ": typ, "kid": kid}
    return jwt.encode(header, dict(claims), jwk(key), registry=REGISTRY)
