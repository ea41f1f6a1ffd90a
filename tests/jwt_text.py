"""The text of a JWT as the tests read and forge it: base64url segments and the unverified payload.

Reading a payload without checking its signature is what a test does to look at what the server
minted; forging segments is how the forged-token tests build what an attacker would send."""

from __future__ import annotations

import json
from typing import Any

from joserfc.util import json_b64encode, urlsafe_b64decode, urlsafe_b64encode


def b64url(data: bytes) -> str:
    return urlsafe_b64encode(data).decode("ascii")


def segment(value: dict[str, Any]) -> str:
    """A header or payload segment: base64url of the JSON object."""
    return json_b64encode(value).decode("ascii")


def unverified_claims(token: str) -> dict[str, Any]:
    """The payload of a compact JWS, its signature unchecked."""
    claims: dict[str, Any] = json.loads(urlsafe_b64decode(token.split(".")[1].encode()))
    return claims
