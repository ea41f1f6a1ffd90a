"""The RS256 signing key: OAUTH_JWT_PRIVATE_KEY_B64 when set, else one generated and kept in Redis.

The generated key is offered with SET NX, so the first replica's key is the one every replica
signs with. The public keys published in the JWKS (and trusted by the verifier) are the signing
key and, when it differs, the generated key, so tokens signed before OAUTH_JWT_PRIVATE_KEY_B64
was set stay valid until they expire. A key's `kid` is its RFC 7638 thumbprint.
"""

from __future__ import annotations

import base64
import binascii
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import trio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from joserfc.jwk import KeyParameters, RSAKey

from oauthproxy.errors import GatewayError
from oauthproxy.oauth.jws import ALGORITHM, jwk

if TYPE_CHECKING:
    from oauthproxy.settings import Settings
    from oauthproxy.storage import Storage

GENERATED_KEY_SIZE = 2048


class SigningKeyError(GatewayError):
    """OAUTH_JWT_PRIVATE_KEY_B64 (or the stored key) is not a usable RSA private key."""


def key_id(public_key: RSAPublicKey) -> str:
    """The RFC 7638 JWK thumbprint (SHA-256, base64url)."""
    return jwk(public_key).thumbprint()


def public_jwk(kid: str, public_key: RSAPublicKey) -> dict[str, Any]:
    parameters: KeyParameters = {"use": "sig", "alg": ALGORITHM, "kid": kid}
    return dict(RSAKey.import_key(public_key, parameters).as_dict(private=False))


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: RSAPrivateKey

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str) -> SigningKey:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as error:
            raise SigningKeyError(f"{source} is not a PEM private key: {error}") from None
        if not isinstance(key, RSAPrivateKey) or key.key_size < 2048:
            raise SigningKeyError(f"{source} must be an RSA key of at least 2048 bits")
        return cls(key_id(key.public_key()), key)

    @property
    def public_key(self) -> RSAPublicKey:
        return self.private_key.public_key()


@dataclass(frozen=True)
class KeySet:
    signing: SigningKey
    public_keys: dict[str, RSAPublicKey]
    deadlines: dict[str, float] = field(default_factory=dict)
    """Keys trusted only until then (epoch seconds): a retired key, for the tokens it signed."""

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(kid, key) for kid, key in sorted(self.public_keys.items())]}


def configured_key(settings: Settings) -> SigningKey | None:
    """The key of OAUTH_JWT_PRIVATE_KEY_B64 (base64 of a PEM file; a bare PEM is accepted too)."""
    if settings.oauth_jwt_private_key_b64 is None:
        return None
    raw = settings.oauth_jwt_private_key_b64.get_secret_value().strip()
    if raw.startswith("-----BEGIN"):
        return SigningKey.from_pem(raw.encode(), source="OAUTH_JWT_PRIVATE_KEY_B64")
    try:
        pem = base64.b64decode(raw, validate=True)
    except binascii.Error:
        raise SigningKeyError("OAUTH_JWT_PRIVATE_KEY_B64 is not base64") from None
    return SigningKey.from_pem(pem, source="OAUTH_JWT_PRIVATE_KEY_B64")


def _generate_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=GENERATED_KEY_SIZE)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")


async def shared_key(storage: Storage) -> SigningKey:
    """The generated key in Redis, made now (off the event loop) when there is none yet."""
    pem = await storage.oauth.signing_key()
    if pem is None:
        pem = await storage.oauth.offer_signing_key(await trio.to_thread.run_sync(_generate_pem))
    return SigningKey.from_pem(pem.encode(), source="the stored signing key")


async def load_keys(storage: Storage, settings: Settings) -> KeySet:
    """The key to sign with and the keys to trust. With OAUTH_JWT_PRIVATE_KEY_B64 set over a
    generated key, the generated one is trusted for one access-token lifetime after the switch
    (the tokens it signed run out), then never again: it was trusted for ever, so whoever had
    it (a backup, a leaked Redis) could go on minting tokens after the rotation meant to end
    that."""
    configured = configured_key(settings)
    if configured is None:
        signing = await shared_key(storage)
        return KeySet(signing, {signing.kid: signing.public_key})
    stored = await storage.oauth.signing_key()
    public = {configured.kid: configured.public_key}
    deadlines: dict[str, float] = {}
    if stored is not None:
        previous = SigningKey.from_pem(stored.encode(), source="the stored signing key")
        now = time.time()
        retired = await storage.oauth.signing_key_retired(now)
        deadline = retired + settings.oauth_access_token_lifetime
        if previous.kid != configured.kid and now < deadline:
            public[previous.kid] = previous.public_key
            deadlines[previous.kid] = deadline
    return KeySet(configured, public, deadlines)
