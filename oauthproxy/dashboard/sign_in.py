"""Which token a GitHub user signs in to the dashboard as: the admin token for a login in
ADMIN_GITHUB_USERS, else the one token whose `github_users` lists the login (both ignore case;
the API keeps a login on one token at most, and off owner tokens when it is an admin's), else
nobody."""

from __future__ import annotations

from oauthproxy.admin_token import ADMIN_NAME
from oauthproxy.models.tokens import Token
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage


class SignInRefused(Exception):
    """Shown to the browser as a page: the message names no secret."""

    def __init__(self, title: str, detail: str, status: int = 400) -> None:
        super().__init__(detail)
        self.title = title
        self.detail = detail
        self.status = status


async def token_for(github_login: str, storage: Storage, settings: Settings) -> Token:
    if github_login.lower() in settings.admin_github_logins():
        admin = await storage.tokens.get(ADMIN_NAME)
        if admin is not None and admin.is_admin:
            return admin
    token = await storage.tokens.by_github_login(github_login)
    if token is None:
        raise SignInRefused(
            "Not allowed to sign in",
            f"GitHub user {github_login} is not allowed to sign in to this dashboard; ask the "
            "admin to add it to a token's GitHub users "
            f"(just token-github-users NAME {github_login}).",
            403,
        )
    if token.suspended is not None:
        raise SignInRefused(
            "Token suspended",
            f"The token GitHub user {github_login} signs in as is suspended: {token.suspended}. "
            "Ask the admin to resume it (just token-resume NAME).",
            403,
        )
    return token
