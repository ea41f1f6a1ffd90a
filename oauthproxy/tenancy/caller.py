"""Who is asking, and how a rule says no."""

from __future__ import annotations

from dataclasses import dataclass

from oauthproxy.errors import GatewayError
from oauthproxy.models.tokens import Token


@dataclass(frozen=True)
class Caller:
    """The token behind an admin-API request, as the rules see it."""

    token_hash: str
    is_admin: bool
    name: str = ""

    @classmethod
    def of(cls, token: Token) -> Caller:
        return cls(token_hash=token.hash, is_admin=token.is_admin, name=token.name)

    def owns(self, owner_token_hash: str | None) -> bool:
        """Whether a record with this owner is the caller's to change (the admin owns all)."""
        if self.is_admin:
            return True
        return owner_token_hash is not None and owner_token_hash == self.token_hash


class Refused(GatewayError):
    """A rule of the tenant model said no; the API answers `status` with this JSON body.

    `error` is the machine-readable reason (`forbidden`, `quota_exceeded`, `target_not_allowed`,
    ...), `field` the request field it is about.
    """

    def __init__(self, status: int, error: str, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error = error
        self.detail = detail
        self.field = field


def forbidden(detail: str, *, field: str | None = None) -> Refused:
    return Refused(403, "forbidden", detail, field=field)
