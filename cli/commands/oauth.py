"""`proxy-client oauth …`: the authorization server: clients, sessions, tokens, health, setup."""

from __future__ import annotations

import base64
import re
from typing import Annotated, Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import present
from cli.config import OutputFormat
from cli.formatting import flatten
from cli.session import CliSession, Session

ALL_ROUTES = api_path("routes", "")
KEY_VARIABLE = "OAUTH_JWT_PRIVATE_KEY_B64"
KEY_BITS = 2048
DEFAULT_REDIRECT_URI = "http://127.0.0.1/callback"
"""A loopback redirect URI matches on any port (RFC 8252): fits a native or CLI client."""

ROUTE_PRIORITY = 95
OAUTH_PATHS = (
    "/authorize",
    "/token",
    "/callback",
    "/verify",
    "/.well-known/oauth-authorization-server",
    "/jwks",
    "/revoke",
    "/introspect",
    "/register",
    "/consent",
    "/.well-known/openid-configuration",
)

app = App(name="oauth", help="The OAuth authorization server: clients, sessions, tokens, health.")

ClientId = Annotated[str, Parameter(help="The client's id (mcp_…, or a metadata document URL).")]
SessionId = Annotated[str, Parameter(help="The session's id.")]


def oauth_path(*segments: str) -> str:
    return api_path("oauth", *segments)


def _query(path: str, **flags: bool) -> str:
    given = [f"{name}=true" for name, on in flags.items() if on]
    return path + ("?" + "&".join(given) if given else "")


@app.command(name="clients")
def list_clients(
    *,
    active_only: Annotated[bool, Parameter(help="Only clients with an active session.")] = False,
    session: Session,
) -> None:
    """List the OAuth clients with their sessions and tokens counted."""
    path = _query(oauth_path("clients"), active_only=active_only)
    session.show(session.api.get(path), kind=Kind.OAUTH_CLIENTS)


@app.command
def client(client_id: ClientId, *, session: Session) -> None:
    """Show one client (never its secret)."""
    session.show(session.api.get(oauth_path("clients", client_id)), kind=Kind.OAUTH_CLIENTS)


@app.command
def register(
    name: Annotated[str, Parameter(help="The client's name, shown to users.")],
    *,
    redirect_uri: Annotated[
        list[str] | None,
        Parameter(help=f"Repeatable (default: {DEFAULT_REDIRECT_URI}, any port).", negative=()),
    ] = None,
    scope: Annotated[str | None, Parameter(help="Space-separated (mcp:read mcp:write).")] = None,
    public: Annotated[bool, Parameter(help="A public client: PKCE, no secret.")] = False,
    session: Session,
) -> None:
    """Register a client as the operator (its users see no consent page); prints its secret."""
    body = {
        "name": name,
        "redirect_uris": redirect_uri or [DEFAULT_REDIRECT_URI],
        "public": public,
        **present(scope=scope or None),
    }
    session.show(session.api.post(oauth_path("clients"), body), reveal_secrets=True)


@app.command(name="sessions")
def list_sessions(
    *,
    all_sessions: Annotated[
        bool, Parameter(name="--all", help="Revoked sessions too.", negative=())
    ] = False,
    session: Session,
) -> None:
    """List the active sessions (one per login: its access tokens and refresh token)."""
    path = _query(oauth_path("sessions"), include_revoked=all_sessions)
    session.show(session.api.get(path), kind=Kind.OAUTH_SESSIONS)


@app.command(name="session")
def show_session(session_id: SessionId, *, session: Session) -> None:
    """Show one session with its access tokens."""
    found = session.api.get(oauth_path("sessions", session_id))
    session.show(found, kind=Kind.OAUTH_SESSIONS)


@app.command(name="revoke-session")
def revoke_session(session_id: SessionId, *, session: Session) -> None:
    """Revoke a session: its refresh token and every access token it holds stop working."""
    session.show(session.api.delete(oauth_path("sessions", session_id)))


@app.command(name="tokens")
def token_statistics(*, session: Session) -> None:
    """Access-token statistics: active, revoked, expired; by client and by user."""
    session.show(session.api.get(oauth_path("tokens")))


@app.command(name="token")
def show_token(
    jti: Annotated[str, Parameter(help="The token's jti.")], *, session: Session
) -> None:
    """Show one access token's record (claims and status)."""
    session.show(session.api.get(oauth_path("tokens", jti)), kind=Kind.OAUTH_TOKENS)


def _show_with_tables(session: CliSession, data: dict[str, Any], lists: tuple[str, ...]) -> None:
    """As a table: the figures, then each list as its own table; other formats: `data`."""
    if session.output.format is not OutputFormat.TABLE:
        session.show(data)
        return
    session.show({field: value for field, value in data.items() if field not in lists})
    for field in lists:
        session.show([flatten(row) for row in data[field]])


@app.command
def metrics(*, session: Session) -> None:
    """Clients, sessions and tokens counted, overall, per client and per user."""
    _show_with_tables(session, session.api.get(oauth_path("metrics")), ("per_client", "per_user"))


@app.command
def health(*, session: Session) -> int:
    """Signing key, JWKS, GitHub and issuer; exits 1 when unhealthy."""
    report = session.api.get(oauth_path("health"))
    session.show(report)
    return 1 if report.get("status") == "unhealthy" else 0


@app.command
def status(*, session: Session) -> None:
    """The authorization server at a glance."""
    session.show(session.api.get(oauth_path("status")))


@app.command(name="test-tokens")
def mint_test_token(
    server_url: Annotated[str, Parameter(help="The MCP server's URL: the token's audience.")],
    *,
    scope: Annotated[str, Parameter(help="Space-separated scopes.")] = "mcp:read mcp:write",
    username: Annotated[str | None, Parameter(help="Default: the admin token's name.")] = None,
    lifetime: Annotated[int | None, Parameter(help="Seconds (default: the server's).")] = None,
    session: Session,
) -> None:
    """Mint an access token for testing an MCP server (admin only; listed and revocable as a
    session of the client oauthproxy-test-tokens)."""
    body = {
        "resource": server_url,
        "scope": scope,
        **present(username=username, lifetime=lifetime),
    }
    minted = session.api.post(oauth_path("test-tokens"), body)
    if session.output.format is not OutputFormat.TABLE:
        session.show(minted)
        return
    token = minted.pop("access_token")
    session.show(minted)
    session.output.console.file.write(f"Authorization: Bearer {token}\n")


# --- setup --------------------------------------------------------------------------------------


def oauth_route(path: str, domain: str) -> dict[str, Any]:
    """The route that sends `path` (and what is under it) to the gateway's own API service."""
    slug = "-".join(re.findall(r"[a-z0-9]+", path)) or "root"
    return {
        "route_id": f"oauth-{slug}",
        "path_pattern": f"{re.escape(path)}(/.*)?$",
        "is_regex": True,
        "target_type": "service",
        "target_value": "api",
        "priority": ROUTE_PRIORITY,
        "description": f"OAuth authorization server (auth.{domain})",
    }


def _is_present(route: dict[str, Any], existing: list[dict[str, Any]], path: str) -> bool:
    """A route of this id, or one for the same path at the same priority (plain or ours)."""
    places = {(r["path_pattern"], r["priority"]) for r in existing}
    ids = {r["route_id"] for r in existing}
    priority = route["priority"]
    return route["route_id"] in ids or bool(
        {(path, priority), (route["path_pattern"], priority)} & places
    )


@app.command(name="routes-setup")
def routes_setup(
    domain: Annotated[str, Parameter(help="The base domain: the issuer is auth.DOMAIN.")],
    *,
    session: Session,
) -> None:
    """Create the OAuth routes (priority 95, every proxy, to the service `api`); the ones that
    exist already are left alone and reported."""
    existing = session.api.get(ALL_ROUTES)
    rows = []
    for path in OAUTH_PATHS:
        route = oauth_route(path, domain)
        action = "existing" if _is_present(route, existing, path) else "created"
        if action == "created":
            session.api.post(ALL_ROUTES, route)
        rows.append({"path": path, "route": route["route_id"], "action": action})
    session.show(rows)


def new_signing_key() -> str:
    """A new RSA private key, PEM (PKCS#8), base64-encoded for OAUTH_JWT_PRIVATE_KEY_B64."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return base64.b64encode(pem).decode("ascii")


@app.command(name="key-generate")
def key_generate(*, session: Session) -> None:
    """Generate an RS256 signing key locally (no API call) and print it for the environment."""
    value = new_signing_key()
    if session.output.format is not OutputFormat.TABLE:
        session.show({"name": KEY_VARIABLE, "value": value, "bits": KEY_BITS})
        return
    session.output.console.file.write(
        f"# A new RS256 signing key (RSA {KEY_BITS}). Put this line in .env (or the gateway's\n"
        "# environment) of every replica and restart them. Tokens signed with the key the\n"
        "# gateway generated (kept in Redis) stay valid until they expire. Keep it secret.\n"
        f"{KEY_VARIABLE}={value}\n"
    )
