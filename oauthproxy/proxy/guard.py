"""The data plane's token checks: a verifier with cached keys, and the revoked tokens in memory.

`Guard.claims` runs on every request to a protected proxy and does no I/O. The supervisor keeps
the guard fresh: it swaps the verifier when the signing keys change and feeds revocations from
the `oauth:revocations` stream, so a revoked token is refused on every replica within a second.
"""

from __future__ import annotations

from oauthproxy.oauth.verify import LEEWAY_SECONDS, Claims, InvalidToken, TokenVerifier


class Guard:
    def __init__(self, verifier: TokenVerifier | None = None) -> None:
        self.verifier = verifier
        self._revoked: dict[str, float] = {}

    def claims(self, token: str, *, now: float) -> Claims:
        """The verified, unrevoked claims of `token`; `InvalidToken` otherwise."""
        if self.verifier is None:
            raise InvalidToken("token verification is not available")
        claims = self.verifier.verify(token, now=now)
        if claims.jti in self._revoked:
            raise InvalidToken("revoked")
        return claims

    def revoke(self, jti: str, expires_at: float) -> None:
        self._revoked[jti] = expires_at

    def forget_expired(self, now: float) -> None:
        """Revoked tokens that expired are refused anyway: stop remembering them, once the
        verifier's leeway past their expiry (clock skew) is over too; before, a revoked token
        the sweep forgot passed again until then."""
        alive = now - LEEWAY_SECONDS
        self._revoked = {jti: exp for jti, exp in self._revoked.items() if exp > alive}
