"""Who may log in: a proxy's `auth_required_users|emails|groups`, or OAUTH_ALLOWED_GITHUB_USERS.

Pure; checked at the GitHub callback for every proxy the authorization names (and reusable by the
data plane for the second check at access time). The rules of one policy:

- `users`: `*` allows every GitHub user; names are compared case-insensitively; an empty list
  allows nobody. A proxy's `auth_required_users: null` means the global OAUTH_ALLOWED_GITHUB_USERS.
- `emails`: globs (`*@example.com`) matched case-insensitively against the primary verified
  email (the one the token carries, so the data plane's check at access agrees).
- `groups`: GitHub organisations (`acme`) or teams (`acme/ops`), case-insensitive.
Every part that is configured must match.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase

from oauthproxy.models.oauth import UserIdentity
from oauthproxy.models.proxies import ProxyTarget

EVERYONE = "*"


def parse_users(setting: str) -> tuple[str, ...]:
    """OAUTH_ALLOWED_GITHUB_USERS: `*`, or comma-separated names; empty is nobody."""
    return tuple(name.strip() for name in setting.split(",") if name.strip())


def _lowered(values: Iterable[str]) -> set[str]:
    return {value.lower() for value in values}


@dataclass(frozen=True)
class AccessPolicy:
    users: tuple[str, ...]
    emails: tuple[str, ...] | None
    groups: tuple[str, ...] | None
    source: str
    """What the policy comes from, for messages: "proxy api.example.com" or the setting."""

    @classmethod
    def global_default(cls, allowed_users: str) -> AccessPolicy:
        return cls(parse_users(allowed_users), None, None, "OAUTH_ALLOWED_GITHUB_USERS")

    @classmethod
    def for_proxy(cls, target: ProxyTarget, allowed_users: str) -> AccessPolicy:
        users = target.auth_required_users
        return cls(
            parse_users(allowed_users) if users is None else tuple(users),
            tuple(target.auth_required_emails or ()) or None,
            tuple(target.auth_required_groups or ()) or None,
            f"proxy {target.hostname}",
        )

    @property
    def reads_identity(self) -> bool:
        """Whether it checks what can change at GitHub after a login: the user's verified
        emails, organisations or teams (a login name is checked by the numeric id's account)."""
        return bool(self.emails or self.groups)

    def refusal(self, identity: UserIdentity) -> str | None:
        """Why `identity` may not log in under this policy, or None when it may."""
        if EVERYONE not in self.users:
            if not self.users:
                return f"no GitHub user is allowed: the allowlist of {self.source} is empty"
            if identity.username.lower() not in _lowered(self.users):
                return f"GitHub user {identity.username} is not in the allowlist of {self.source}"
        if self.emails and not self._email_allowed(identity):
            return f"no verified email of {identity.username} matches {self.source}"
        if self.groups and not (_lowered(self.groups) & _lowered(identity.groups)):
            return f"{identity.username} is in none of the groups {self.source} requires"
        return None

    def _email_allowed(self, identity: UserIdentity) -> bool:
        email = (identity.email or "").lower()
        return bool(email) and any(fnmatchcase(email, p) for p in _lowered(self.emails or ()))
