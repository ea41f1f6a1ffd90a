"""API tokens: bearer credentials that own proxies, certificates and services."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from oauthproxy.models.common import (
    Email,
    Name,
    OwnerHash,
    Printable,
    Query,
    Record,
    Request,
)

GITHUB_LOGIN_PATTERN = r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,37}[A-Za-z0-9])?$"
GitHubLogin = Annotated[str, StringConstraints(pattern=GITHUB_LOGIN_PATTERN)]
"""A GitHub login: letters, digits and inner hyphens, 1-39 characters (GitHub's own rule)."""

MAX_GITHUB_USERS = 20

SuspensionReason = Annotated[str, StringConstraints(min_length=1, max_length=300), Printable]
"""Why a token is suspended: shown to its holder in the 401 and to the admin in its record."""


def _distinct_logins(logins: list[str]) -> list[str]:
    """A login listed twice is refused (the schema's `uniqueItems`); logins ignore case, so
    `Alice` after `alice` is the same login and kept once, in its first spelling."""
    if len(set(logins)) != len(logins):
        raise ValueError("a GitHub login is listed twice")
    first: dict[str, str] = {}
    for login in logins:
        first.setdefault(login.lower(), login)
    return list(first.values())


GitHubUsers = Annotated[
    list[GitHubLogin],
    Field(max_length=MAX_GITHUB_USERS, json_schema_extra={"uniqueItems": True}),
    AfterValidator(_distinct_logins),
]
"""GitHub users who may sign in to the dashboard as a token (at most 20, distinct)."""


class Token(Record):
    """`token:{name}` — the full record, secret included (the spec's full-retrieval design)."""

    name: Name
    token: str
    hash: OwnerHash
    cert_email: str | None = None
    created_at: datetime
    created_by: str | None = None
    is_admin: bool = False
    github_users: list[str] = Field(default_factory=list)
    suspended: str | None = None
    """Why the token does not authenticate now (None: it does). Never the admin token's."""


SUSPENDED_DESCRIPTION = (
    "Why the token is suspended: while set, its secret and its dashboard sessions answer 401 "
    "`token_suspended` (null: it works). Set by the admin, and by `config load` while it "
    "replays the records of a token it restored"
)


class TokenView(Record):
    """What listing and showing a token returns: everything but the secret."""

    name: str
    hash: str
    cert_email: str | None
    created_at: datetime
    created_by: str | None
    is_admin: bool
    github_users: list[str] = Field(
        default_factory=list, description="GitHub users who may sign in to the dashboard as it"
    )
    suspended: str | None = Field(default=None, description=SUSPENDED_DESCRIPTION)

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
    github_users: GitHubUsers = Field(default_factory=list)
    suspended: SuspensionReason | None = Field(
        default=None,
        description="Create it suspended, with this reason (it authenticates once the admin "
        "resumes it): how `config load` restores a token before its records",
    )


class TokenGenerate(Request):
    name: Name
    cert_email: Email | None = None
    github_users: GitHubUsers = Field(default_factory=list)


class TokenGitHubUsersUpdate(Request):
    """Who may sign in to the dashboard with GitHub as this token (replaces the list)."""

    github_users: GitHubUsers


class TokenSuspend(Request):
    """Suspend a token: its secret and dashboard sessions answer 401 until it is resumed."""

    reason: SuspensionReason = Field(
        default="suspended by the admin", description="Why: its holder reads it in the 401"
    )
    if_reason: SuspensionReason | None = Field(
        default=None,
        description="Only if the token is not suspended, or is suspended with this reason "
        "(409 naming `if_reason` otherwise): how `config load` takes over a suspension another "
        "load left without overwriting one the admin set since",
    )


ExpectedReason = Annotated[str, StringConstraints(min_length=1, max_length=300)]
"""A reason only compared with the one stored (never stored itself): any text, so that the
query's schema is what it accepts; one no reason can be (a control character) is a 409."""


class TokenResume(Query):
    """Resume a token, with `if_reason` only when its suspension is still that one."""

    if_reason: ExpectedReason | None = Field(
        default=None,
        description="Only if the token is suspended with this reason (409 naming `if_reason` "
        "when its reason is another; a token not suspended stays as it is): how `config load` "
        "resumes the tokens it suspended without resuming one the admin suspended since",
    )


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
