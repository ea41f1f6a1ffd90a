"""Which scopes a user may receive: the operator's policy, applied whatever a client asks.

A client's registered `scope` only says what it may *ask* for, and anyone may register a client
(`POST /register` is open) declaring `mcp:admin`. So the scope granted is the scope asked for,
narrowed to what the logged-in user may receive:

- users named in OAUTH_ADMIN_USERS (`*`: every user who may log in): every supported scope;
- everyone else: OAUTH_USER_SCOPES (default `mcp:read mcp:write`).

Pure. Applied once the user is known (the GitHub callback, before the consent page, so the page
shows only what will be granted) and again on every refresh, so a user taken off the list stops
receiving the scope at the next refresh.
"""

from __future__ import annotations

from dataclasses import dataclass

from oauthproxy.oauth.allowlist import EVERYONE, parse_users
from oauthproxy.oauth.parameters import SUPPORTED_SCOPES, scope_list
from oauthproxy.settings import Settings


@dataclass(frozen=True)
class ScopePolicy:
    admin_users: frozenset[str]
    """Lower-case GitHub logins, or {"*"}."""
    user_scopes: frozenset[str]

    @classmethod
    def of(cls, settings: Settings) -> ScopePolicy:
        return cls.parse(settings.oauth_admin_users, settings.oauth_user_scopes)

    @classmethod
    def parse(cls, admin_users: str, user_scopes: str) -> ScopePolicy:
        admins = frozenset(name.lower() for name in parse_users(admin_users))
        return cls(admins, frozenset(scope_list(user_scopes)))

    def receivable(self, username: str) -> frozenset[str]:
        """Every scope `username` may receive."""
        if EVERYONE in self.admin_users or username.lower() in self.admin_users:
            return frozenset(SUPPORTED_SCOPES)
        return self.user_scopes

    def grant(self, requested: str, username: str) -> str:
        """The requested scopes `username` may receive, in the order asked ("" when none)."""
        allowed = self.receivable(username)
        return " ".join(scope for scope in scope_list(requested) if scope in allowed)

    def withheld(self, requested: str, username: str) -> list[str]:
        """The requested scopes `username` may not receive (for messages)."""
        allowed = self.receivable(username)
        return [scope for scope in scope_list(requested) if scope not in allowed]
