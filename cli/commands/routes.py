"""`proxy-client route …`: priority-ordered path rules that send requests to another target."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.session import Session

ALL_ROUTES = api_path("routes", "")  # the collection's path ends with a slash

app = App(name="route", help="Manage routes (path rules that send requests to another target).")

TargetType = Literal["port", "service", "hostname", "url"]
Scope = Literal["global", "proxy"]

RouteId = Annotated[str, Parameter(help="The route's id.")]
PathPattern = Annotated[
    str, Parameter(help="Path prefix, e.g. /api/ (a regular expression with --regex).")
]
Target = Annotated[TargetType, Parameter(help="What the route forwards to.")]
TargetValue = Annotated[
    str,
    Parameter(help="A port (3000), service name (auth), proxy hostname (api.example.com) or URL."),
]


def _listed(text: str | None) -> list[str] | None:
    """ "GET, POST" → ["GET", "POST"]; an empty string is an empty list."""
    if text is None:
        return None
    return [item.strip() for item in text.split(",") if item.strip()]


def _present(fields: dict[str, Any]) -> dict[str, Any]:
    return {field: value for field, value in fields.items() if value is not None}


@Parameter(name="*")
@dataclass(frozen=True)
class RouteOptions:
    """The options `create` and `update` share; None means not given."""

    priority: Annotated[
        int | None, Parameter(help="Higher is checked first, 0-1000 (default 50).")
    ] = None
    methods: Annotated[
        str | None, Parameter(help="Comma-separated HTTP methods, e.g. GET,POST (default: any).")
    ] = None
    regex: Annotated[
        bool | None, Parameter(help="The path is a regular expression matched at its start.")
    ] = None
    description: Annotated[str | None, Parameter(help="What the route is for.")] = None
    scope: Annotated[
        Scope | None,
        Parameter(help="global (every proxy; admin token only) or proxy (only --proxies)."),
    ] = None
    proxies: Annotated[
        str | None,
        Parameter(
            help="Comma-separated proxy hostnames the route applies to (implies --scope proxy)."
        ),
    ] = None

    def body(self) -> dict[str, Any]:
        scope = self.scope or ("proxy" if self.proxies else None)
        return _present(
            {
                "priority": self.priority,
                "methods": _listed(self.methods),
                "is_regex": self.regex,
                "description": self.description,
                "scope": scope,
                "proxy_hostnames": _listed(self.proxies),
            }
        )


NO_OPTIONS = RouteOptions()


@app.command(name="list")
def list_routes(*, session: Session) -> None:
    """List routes, highest priority first."""
    session.show(session.api.get(ALL_ROUTES), kind=Kind.ROUTES)


@app.command(name="list-by-scope")
def list_by_scope(
    scope: Annotated[Literal["all", "global", "proxy"], Parameter(help="Which routes.")] = "all",
    *,
    session: Session,
) -> None:
    """List the routes of one scope (all, global or proxy)."""
    query = "" if scope == "all" else f"?scope={scope}"
    session.show(session.api.get(ALL_ROUTES + query), kind=Kind.ROUTES)


@app.command
def show(route_id: RouteId, *, session: Session) -> None:
    """Show one route."""
    session.show(session.api.get(api_path("routes", route_id)), kind=Kind.ROUTES)


@app.command
def create(
    path: PathPattern,
    target_type: Target,
    target_value: TargetValue,
    *,
    route_id: Annotated[
        str | None, Parameter(name="--id", help="The route's id (default: made from the path).")
    ] = None,
    options: RouteOptions | None = None,
    session: Session,
) -> None:
    """Create a route owned by your token."""
    body = {
        "path_pattern": path,
        "target_type": target_type,
        "target_value": target_value,
        **_present({"route_id": route_id}),
        **(options or NO_OPTIONS).body(),
    }
    session.show(session.api.post(ALL_ROUTES, body), kind=Kind.ROUTES)


@app.command
def update(
    route_id: RouteId,
    *,
    path: Annotated[str | None, Parameter(help="A new path pattern.")] = None,
    target_type: Annotated[TargetType | None, Parameter(help="A new target type.")] = None,
    target_value: Annotated[str | None, Parameter(help="A new target value.")] = None,
    enabled: Annotated[bool | None, Parameter(help="Switch the route on or off.")] = None,
    options: RouteOptions | None = None,
    session: Session,
) -> None:
    """Change some fields of a route (yours, or any with the admin token)."""
    body = _present(
        {
            "path_pattern": path,
            "target_type": target_type,
            "target_value": target_value,
            "enabled": enabled,
        }
    )
    body.update((options or NO_OPTIONS).body())
    session.show(session.api.put(api_path("routes", route_id), body), kind=Kind.ROUTES)


@app.command
def delete(route_id: RouteId, *, session: Session) -> None:
    """Delete a route (yours, or any with the admin token)."""
    session.show(session.api.delete(api_path("routes", route_id)), kind=Kind.ROUTES)
