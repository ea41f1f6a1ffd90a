"""`proxy-client service …`: named services that routes and proxies can point at."""

from __future__ import annotations

from typing import Annotated, Literal

from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import present
from cli.session import Session

EXTERNAL = api_path("services", "external")

app = App(name="service", help="Manage services: external URLs, the internal API, Docker.")

ServiceName = Annotated[str, Parameter(help="The service's name.")]
TargetUrl = Annotated[str, Parameter(help="Where it is: an http:// or https:// URL.")]
Description = Annotated[str | None, Parameter(help="What the service is.")]


def external_path(name: str) -> str:
    return api_path("services", "external", name)


@app.command
def register(
    name: ServiceName, target_url: TargetUrl, *, description: Description = None, session: Session
) -> None:
    """Register an external service: a name for a URL, owned by the calling token."""
    body = {"service_name": name, "target_url": target_url, **present(description=description)}
    session.show(session.api.post(EXTERNAL, body), kind=Kind.SERVICES)


@app.command(name="list-external")
def list_external(*, session: Session) -> None:
    """List the external services."""
    session.show(session.api.get(EXTERNAL), kind=Kind.SERVICES)


@app.command(name="show-external")
def show_external(name: ServiceName, *, session: Session) -> None:
    """Show one external service."""
    session.show(session.api.get(external_path(name)), kind=Kind.SERVICES)


@app.command(name="update-external")
def update_external(
    name: ServiceName, target_url: TargetUrl, *, description: Description = None, session: Session
) -> None:
    """Point an external service at a new URL (its owner or the admin)."""
    body = {"target_url": target_url, **present(description=description)}
    session.show(session.api.put(external_path(name), body), kind=Kind.SERVICES)


@app.command
def unregister(name: ServiceName, *, session: Session) -> None:
    """Delete an external service (its owner or the admin)."""
    session.show(session.api.delete(external_path(name)), kind=Kind.SERVICES)


@app.command(name="list-all")
def list_all(
    *,
    type: Annotated[
        Literal["docker", "external", "internal"] | None,
        Parameter(help="Only services of this type."),
    ] = None,
    session: Session,
) -> None:
    """List every service: the internal API, external services and Docker services."""
    query = f"?type={type}" if type else ""
    session.show(session.api.get(api_path("services", "unified") + query), kind=Kind.SERVICES)
