"""PKCE (RFC 7636) with S256 only: `plain` is refused, the verifier is compared in constant time.

The S256 transform is Authlib's (`authlib.oauth2.rfc7636`); the comparison is ours, because
Authlib's `compare_s256_code_challenge` uses `==`.
"""

from __future__ import annotations

import hmac
import re

from authlib.oauth2.rfc7636 import create_s256_code_challenge

METHOD = "S256"
_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9\-_]{43}$")


def s256(verifier: str) -> str:
    return str(create_s256_code_challenge(verifier))


def valid_challenge(challenge: str) -> bool:
    """An S256 challenge is the base64url of a SHA-256 digest: exactly 43 characters."""
    return bool(_CHALLENGE.match(challenge))


def verifier_matches(verifier: str, challenge: str) -> bool:
    if not _VERIFIER.match(verifier):
        return False
    return hmac.compare_digest(s256(verifier), challenge)
