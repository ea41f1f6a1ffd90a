"""API tokens: bearer credentials that own proxies, certificates and services."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from oauthproxy.models.common import Email, Name, OwnerHash, Record, Request


class Token(Record):
    """`token:{name}` — the full record, secret included (the spec's full-retrieval design)."""

    name: Name
    token: str
    hash: OwnerHash
    cert_email: str | None = None
    created_at: datetime
    created_by: str | None = None
    is_admin: bool = False


class TokenView(Record):
    """What listing and showing a token returns: everything but the secret."""

    name: str
    hash: str
    cert_email: str | None
    created_at: datetime
    created_by: str | None
    is_admin: bool

    @classmethod
    def of(cls, token: Token) -> TokenView:
        return cls(**token.model_dump(exclude={"token"}))


class TokenSecret(Record):
    """A token together with its secret value: returned once on creation and by reveal."""

    name: str
    token: str
    hash: str
    cert_email: str | None
    created_at: datetime

    @classmethod
    def of(cls, token: Token) -> TokenSecret:
        return cls(**token.model_dump(include=set(cls.model_fields)))


class TokenCreate(Request):
    name: Name
    cert_email: Email | None = None
    token: str | None = Field(
        default=None,
        min_length=32,
        max_length=256,
        pattern=r"^[A-Za-z0-9_.~-]+$",
        description="Your own secret (32+ URL-safe characters); omitted, one is generated",
    )


class TokenGenerate(Request):
    name: Name
    cert_email: Email | None = None


class TokenEmailUpdate(Request):
    cert_email: Email
    name: Name | None = Field(
        default=None, description="Another token's name (admin only); default: your own token"
    )


class OwnedResources(Record):
    proxies: list[str] = Field(default_factory=list)
    certificates: list[str] = Field(default_factory=list)
    services: list[str] = Field(default_factory=list)
    routes: list[str] = Field(default_factory=list)


class TokenDeleted(Record):
    name: str
    deleted: OwnedResources
