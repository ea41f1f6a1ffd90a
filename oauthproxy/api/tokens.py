"""`/api/v1/tokens/`: bearer tokens and what they own."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, current_app
from quart_schema import document_response, validate_querystring, validate_request

from oauthproxy.api.auth import current_token, requires_token, signed_in_with_github
from oauthproxy.api.contract import also_refuses
from oauthproxy.api.docker_create import remove_containers_of
from oauthproxy.api.errors import ApiError
from oauthproxy.api.state import app_state
from oauthproxy.errors import NotFound
from oauthproxy.models.tokens import (
    Token,
    TokenCreate,
    TokenDeleted,
    TokenEmailUpdate,
    TokenGenerate,
    TokenGitHubUsersUpdate,
    TokenResume,
    TokenSecret,
    TokenSuspend,
    TokenView,
)
from oauthproxy.storage import Storage, cascades
from oauthproxy.storage.tokens import new_token

tokens = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens")

Json = dict[str, Any]


def _storage() -> Storage:
    return app_state(current_app).storage


def _json(model: TokenView | TokenSecret | TokenDeleted) -> Json:
    return model.model_dump(mode="json")


async def _visible_token(name: str) -> Token:
    """The named token, if the caller is the admin or that token itself; any other token reads
    to an owner exactly as a missing one (404), so names cannot be probed."""
    caller = current_token()
    if not caller.is_admin and caller.name != name:
        raise NotFound("token", name)
    token = await _storage().tokens.get(name)
    if token is None:
        raise NotFound("token", name)
    return token


def _refuse_admin_logins(github_users: list[str], *, for_admin: bool) -> None:
    """A login in ADMIN_GITHUB_USERS signs in as the admin; listed on an owner token it would
    mean two things at once (409)."""
    if for_admin:
        return
    admins = app_state(current_app).settings.admin_github_logins()
    for login in github_users:
        if login.lower() in admins:
            raise ApiError(
                409,
                "conflict",
                f"the GitHub user {login} signs in as the admin (ADMIN_GITHUB_USERS); "
                "it cannot also sign in as an owner token",
                field="github_users",
            )


async def _create(
    name: str,
    secret: str | None,
    cert_email: str | None,
    github_users: list[str],
    suspended: str | None = None,
) -> Json:
    caller = current_token()
    _refuse_admin_logins(github_users, for_admin=False)
    token = new_token(
        name,
        secret=secret,
        cert_email=cert_email or app_state(current_app).settings.admin_email,
        created_by=caller.name,
        github_users=github_users,
    ).model_copy(update={"suspended": suspended})
    await _storage().tokens.create(token)  # suspended from its first moment, when asked
    return _json(TokenSecret.of(token))


@tokens.get("/")
@requires_token()
@document_response(list[TokenView])
async def list_tokens() -> list[Json]:
    """List tokens: every token for the admin, only its own for any other token."""
    caller = current_token()
    found = await _storage().tokens.all() if caller.is_admin else [caller]
    return [_json(TokenView.of(token)) for token in sorted(found, key=lambda t: t.name)]


@tokens.post("/")
@requires_token(admin=True)
@validate_request(TokenCreate)
@document_response(TokenSecret, 201)
async def create_token(data: TokenCreate) -> tuple[Json, int]:
    """Create a token, with your own secret or a generated one; the secret is returned once."""
    made = await _create(data.name, data.token, data.cert_email, data.github_users, data.suspended)
    return made, 201


@tokens.post("/generate")
@requires_token(admin=True)
@validate_request(TokenGenerate)
@document_response(TokenSecret, 201)
async def generate_token(data: TokenGenerate) -> tuple[Json, int]:
    """Create a token with a generated secret and return it for display."""
    return await _create(data.name, None, data.cert_email, data.github_users), 201


@tokens.put("/email")
@requires_token()
@validate_request(TokenEmailUpdate)
@document_response(TokenView)
async def update_email(data: TokenEmailUpdate) -> Json:
    """Set the certificate email of the calling token (or, for the admin, of a named one)."""
    caller = current_token()
    name = data.name or caller.name
    if name != caller.name and not caller.is_admin:
        raise NotFound("token", name)  # another token reads as a missing one
    updated = await _storage().tokens.update_email(name, data.cert_email)
    if updated is None:
        raise NotFound("token", name)
    return _json(TokenView.of(updated))


@tokens.put("/<name>/github-users")
@requires_token(admin=True)
@validate_request(TokenGitHubUsersUpdate)
@document_response(TokenView)
async def update_github_users(name: str, data: TokenGitHubUsersUpdate) -> Json:
    """Set which GitHub users may sign in to the dashboard as this token (admin only; replaces
    the list). A login may be listed on one token only (409)."""
    token = await _storage().tokens.get(name)
    if token is None:
        raise NotFound("token", name)
    _refuse_admin_logins(data.github_users, for_admin=token.is_admin)
    updated = await _storage().tokens.set_github_users(name, data.github_users)
    if updated is None:
        raise NotFound("token", name)
    return _json(TokenView.of(updated))


@tokens.put("/<name>/suspended")
@requires_token(admin=True)
@validate_request(TokenSuspend)
@document_response(TokenView)
async def suspend_token(name: str, data: TokenSuspend) -> Json:
    """Suspend a token (admin only): until it is resumed, its secret and its dashboard sessions
    answer 401 `token_suspended` with the reason; what it owns keeps serving. Suspending a
    suspended token replaces the reason; with `if_reason`, only when the reason is that one or
    the token is not suspended (409 otherwise). The admin token is never suspended (409)."""
    return await _suspension(name, data.reason, data.if_reason)


@tokens.delete("/<name>/suspended")
@requires_token(admin=True)
@validate_querystring(TokenResume)
@document_response(TokenView)
async def resume_token(name: str, query_args: TokenResume) -> Json:
    """Resume a suspended token (admin only); a token that is not suspended stays as it is.
    With `?if_reason=`, only a token suspended with that reason is resumed (409 naming
    `if_reason` when its reason is another)."""
    return await _suspension(name, None, query_args.if_reason)


async def _suspension(name: str, reason: str | None, if_reason: str | None) -> Json:
    updated = await _storage().tokens.set_suspended(name, reason, if_reason=if_reason)
    if updated is None:
        raise NotFound("token", name)
    return _json(TokenView.of(updated))


@tokens.get("/info")
@requires_token()
@document_response(TokenView)
async def token_info() -> Json:
    """The calling token."""
    return _json(TokenView.of(current_token()))


@tokens.get("/<name>")
@requires_token()
@document_response(TokenView)
async def get_token(name: str) -> Json:
    """One token, without its secret."""
    return _json(TokenView.of(await _visible_token(name)))


@tokens.get("/<name>/reveal")
@also_refuses(403)
@requires_token()
@document_response(TokenSecret)
async def reveal_token(name: str) -> Json:
    """One token with its secret. Not to a dashboard session: signing in with GitHub lends a
    token's rights for a while, never its secret (403)."""
    if signed_in_with_github():
        raise ApiError(
            403,
            "forbidden",
            "a dashboard session signed in with GitHub cannot read token secrets; "
            "use the token itself",
            field="Authorization",
        )
    return _json(TokenSecret.of(await _visible_token(name)))


@tokens.delete("/<name>")
@requires_token(admin=True)
@document_response(TokenDeleted)
async def delete_token(name: str) -> Json:
    """Delete a token and, in the same transaction, every proxy, certificate, service and route
    it owns; then the containers of its Docker services."""
    token = await _storage().tokens.get(name)
    if token is None:
        raise NotFound("token", name)
    if token.hash == current_token().hash:
        raise ApiError(409, "conflict", "a token cannot delete itself", field="name")
    deleted = await cascades.delete_token(_storage(), name)
    await remove_containers_of(token.hash)
    return _json(TokenDeleted(name=name, deleted=deleted))
