"""`proxy-client resource …`: the registry of protected resources (MCP servers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import comma_list, present
from cli.session import Session

ALL_RESOURCES = api_path("resources", "")  # the collection's path ends with a slash

app = App(name="resource", help="Manage the registry of protected resources (MCP servers).")

Uri = Annotated[str, Parameter(help="The resource's URI, e.g. https://mcp.example.com.")]


@Parameter(name="*")
@dataclass(frozen=True)
class ResourceFields:
    """The fields of a resource besides its URI, as options."""

    name: Annotated[str | None, Parameter(help="A name for people.")] = None
    proxy: Annotated[str | None, Parameter(help="The hostname of the proxy that serves it.")] = None
    scopes: Annotated[str | None, Parameter(help="Comma-separated (mcp:read,mcp:write).")] = None
    metadata_url: Annotated[
        str | None, Parameter(help="Its RFC 9728 metadata URL (default: the well-known one).")
    ] = None

    def body(self) -> dict[str, Any]:
        return present(
            name=self.name,
            proxy_target=self.proxy,
            scopes=comma_list(self.scopes),
            metadata_url=self.metadata_url,
        )


def resource_path(uri: str, *rest: str) -> str:
    return api_path("resources", uri, *rest)


@app.command(name="list")
def list_resources(*, session: Session) -> None:
    """List the registered protected resources."""
    session.show(session.api.get(ALL_RESOURCES), kind=Kind.RESOURCES)


@app.command
def show(uri: Uri, *, session: Session) -> None:
    """Show one protected resource."""
    session.show(session.api.get(resource_path(uri)), kind=Kind.RESOURCES)


@app.command
def create(uri: Uri, *, fields: ResourceFields | None = None, session: Session) -> None:
    """Register a protected resource."""
    body = {"uri": uri, **(fields.body() if fields else {})}
    session.show(session.api.post(ALL_RESOURCES, body), kind=Kind.RESOURCES)


@app.command
def update(uri: Uri, *, fields: ResourceFields | None = None, session: Session) -> None:
    """Change the given fields of a protected resource."""
    body = fields.body() if fields else {}
    session.show(session.api.put(resource_path(uri), body), kind=Kind.RESOURCES)


@app.command
def delete(uri: Uri, *, session: Session) -> None:
    """Remove a protected resource from the registry."""
    session.show(session.api.delete(resource_path(uri)), kind=Kind.RESOURCES)


@app.command(name="validate-token")
def validate_token(
    uri: Uri,
    token: Annotated[str, Parameter(help="The access token (a JWT).")],
    *,
    session: Session,
) -> int:
    """Check a token against a resource: signature, issuer, expiry, audience, revocation; exits
    1 when it is refused."""
    verdict = session.api.post(resource_path(uri, "validate-token"), {"token": token})
    session.show(verdict)
    return 0 if verdict.get("valid") else 1


@app.command(name="auto-register")
def auto_register(*, session: Session) -> None:
    """Register a resource for every auth-enabled proxy and every proxy with resource metadata."""
    session.show(session.api.post(api_path("resources", "auto-register"), {}))
