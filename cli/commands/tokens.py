"""`proxy-client token …`: bearer tokens, which own proxies, certificates and services."""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.session import Session

ALL_TOKENS = api_path("tokens", "")  # the collection's path ends with a slash

app = App(name="token", help="Manage API tokens (bearer credentials that own resources).")

TokenName = Annotated[str, Parameter(help="The token's name.")]
CertEmail = Annotated[
    str | None,
    Parameter(help="Email for its ACME certificates (default: the gateway's ADMIN_EMAIL)."),
]
Secret = Annotated[
    str | None,
    Parameter(help="Your own secret, 32+ URL-safe characters (default: a generated one)."),
]

GitHubUser = Annotated[
    list[str] | None,
    Parameter(
        name="--github-user",
        help="A GitHub login that may sign in to the dashboard as this token (repeatable).",
        negative=(),
    ),
]


def _present(**fields: str | list[str] | None) -> dict[str, Any]:
    return {field: value for field, value in fields.items() if value is not None}


@app.command(name="list")
def list_tokens(*, session: Session) -> None:
    """List tokens: every token for the admin, only its own for any other token."""
    session.show(session.api.get(ALL_TOKENS), kind=Kind.TOKENS)


@app.command
def show(name: TokenName, *, session: Session) -> None:
    """Retrieve a token with its full secret."""
    session.show(session.api.get(api_path("tokens", name, "reveal")), reveal_secrets=True)


@app.command
def get(name: TokenName, *, session: Session) -> None:
    """Show a token without its secret."""
    session.show(session.api.get(api_path("tokens", name)), kind=Kind.TOKENS)


@app.command
def info(*, session: Session) -> None:
    """Show the token this client authenticates with."""
    session.show(session.api.get(api_path("tokens", "info")), kind=Kind.TOKENS)


@app.command
def create(
    name: TokenName,
    *,
    email: CertEmail = None,
    value: Secret = None,
    github_user: GitHubUser = None,
    session: Session,
) -> None:
    """Create a token (admin only) and print its secret."""
    body = _present(name=name, cert_email=email, token=value, github_users=github_user)
    session.show(session.api.post(ALL_TOKENS, body), reveal_secrets=True)


@app.command
def generate(
    name: TokenName, *, email: CertEmail = None, github_user: GitHubUser = None, session: Session
) -> None:
    """Create a token with a generated secret (admin only) and print it."""
    body = _present(name=name, cert_email=email, github_users=github_user)
    session.show(session.api.post(api_path("tokens", "generate"), body), reveal_secrets=True)


@app.command
def delete(name: TokenName, *, session: Session) -> None:
    """Delete a token and every proxy, certificate, service and route it owns (admin only)."""
    session.show(session.api.delete(api_path("tokens", name)))


@app.command
def email(
    name: TokenName,
    cert_email: Annotated[str, Parameter(help="The new certificate email.")],
    *,
    session: Session,
) -> None:
    """Set a token's certificate email (the admin may set any token's)."""
    body = {"cert_email": cert_email, "name": name}
    session.show(session.api.put(api_path("tokens", "email"), body), kind=Kind.TOKENS)


@app.command(name="github-users")
def github_users(
    name: TokenName,
    logins: Annotated[
        list[str] | None,
        Parameter(
            help="GitHub logins, separate or comma-separated (none: nobody signs in with "
            "GitHub as this token)."
        ),
    ] = None,
    *,
    session: Session,
) -> None:
    """Set who may sign in to the dashboard with GitHub as a token (admin only; replaces the
    list; a login may be on one token only)."""
    listed = [login.strip() for given in logins or [] for login in given.split(",")]
    body = {"github_users": [login for login in listed if login]}
    path = api_path("tokens", name, "github-users")
    session.show(session.api.put(path, body), kind=Kind.TOKENS)


@app.command
def suspend(
    name: TokenName,
    *,
    reason: Annotated[
        str | None, Parameter(help="Why (its holder reads it in the 401 answer).")
    ] = None,
    session: Session,
) -> None:
    """Suspend a token (admin only): its secret and dashboard sessions answer 401
    `token_suspended` until it is resumed; what it owns keeps serving. Never the admin token."""
    body = _present(reason=reason)
    path = api_path("tokens", name, "suspended")
    session.show(session.api.put(path, body), kind=Kind.TOKENS)


@app.command
def resume(name: TokenName, *, session: Session) -> None:
    """Resume a suspended token (admin only), e.g. one an interrupted `config load` left
    suspended."""
    path = api_path("tokens", name, "suspended")
    session.show(session.api.delete(path), kind=Kind.TOKENS)
