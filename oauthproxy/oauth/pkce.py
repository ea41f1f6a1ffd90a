"""PKCE (RFC 7636) with S256 only: `plain` is refused, the verifier is compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import re

from oauthproxy.oauth.jws import b64url_encode

METHOD = "S256"
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def s256(verifier: str) -> str:
    return b64url_encode(hashlib.sha256(verifier.encode("ascii")).digest())


def valid_challenge(challenge: str) -> bool:
    """An S256 challenge is the base64url of a SHA-256 digest: exactly 43 characters."""
    return bool(_CHALLENGE.match(challenge))


def verifier_matches(verifier: str, challenge: str) -> bool:
    if not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
