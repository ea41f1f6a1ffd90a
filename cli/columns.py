"""What each kind of resource looks like as a table: type detection, columns, summary, hint."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from rich.box import ROUNDED, Box

from cli.cells import infer_style, is_missing, parse_time

Row = Mapping[str, Any]
TIME_UNITS = ((86_400, "d"), (3_600, "h"), (60, "m"), (1, "s"))


class Kind(StrEnum):
    TOKENS = "tokens"
    CERTIFICATES = "certificates"
    PROXIES = "proxies"
    SERVICES = "services"
    ROUTES = "routes"
    OAUTH_CLIENTS = "oauth_clients"
    OAUTH_SESSIONS = "oauth_sessions"
    OAUTH_TOKENS = "oauth_tokens"
    RESOURCES = "resources"
    LOGS = "logs"


def _all_of(*fields: str) -> Callable[[Row], bool]:
    return lambda row: all(field in row for field in fields)


def _any_of(*fields: str) -> Callable[[Row], bool]:
    return lambda row: any(field in row for field in fields)


DETECTION: tuple[tuple[Kind, Callable[[Row], bool]], ...] = (
    # The two-field rules go first: a proxy also carries `cert_name`.
    (Kind.PROXIES, _all_of("hostname", "target_url")),
    (Kind.OAUTH_CLIENTS, _all_of("client_id", "client_secret")),
    (Kind.TOKENS, _any_of("token", "cert_email")),
    (Kind.CERTIFICATES, _any_of("cert_name", "fullchain_pem")),
    (Kind.SERVICES, _any_of("service_name", "image")),
    (Kind.ROUTES, _any_of("route_id", "path_pattern")),
    (Kind.LOGS, _any_of("client_ip", "request_path")),
)


def detect_kind(data: Any) -> Kind | None:
    """The kind of a resource or a list of them, judged by the (first) object's fields."""
    sample = data[0] if isinstance(data, list) and data else data
    if not isinstance(sample, dict):
        return None
    return next((kind for kind, matches in DETECTION if matches(sample)), None)


@dataclass(frozen=True)
class Column:
    field: str
    header: str
    style: str = ""
    derive: Callable[[Row], Any] | None = None
    """Computes the value from the whole row, for columns that combine fields."""
    cut: int | None = None
    """In lists, the column's widest: longer text (an error message) ends in an ellipsis."""

    def value(self, row: Row) -> Any:
        return self.derive(row) if self.derive else row.get(self.field)


def _every_row(row: Row) -> bool:
    return True


@dataclass(frozen=True)
class Tally:
    """One part of the summary line: how many rows `counts`, e.g. "3 proxies" or "1 HTTPS"."""

    label: str
    plural: str | None = None
    counts: Callable[[Row], bool] = _every_row

    def describe(self, rows: Sequence[Row]) -> tuple[int, str]:
        number = sum(1 for row in rows if self.counts(row))
        label = self.plural if self.plural and number != 1 else self.label
        return number, f"{number} {label}"


@dataclass(frozen=True)
class Layout:
    columns: tuple[Column, ...]
    tallies: tuple[Tally, ...]
    empty_hint: str
    box: Box = ROUNDED
    legend: tuple[tuple[str, str], ...] = ()
    """Marks this kind's derived cells use and what they mean (status icons are common)."""

    def column_for(self, field: str) -> Column | None:
        return next((c for c in self.columns if c.field == field and not c.derive), None)

    def summary(self, rows: Sequence[Row]) -> str:
        """ "Summary: 2 tokens | 1 admin": the first tally always, the others when not zero."""
        first, *others = (tally.describe(rows) for tally in self.tallies)
        parts = [first[1], *(text for number, text in others if number)]
        return "Summary: " + " | ".join(parts)


def proxy_status(row: Row) -> str:
    """ "HTTP | HTTPS✓": the enabled listeners; HTTPS is ⚠ while the proxy has no certificate."""
    if row.get("enabled") is False:
        return "disabled"
    https = "HTTPS✓" if row.get("cert_name") else "HTTPS⚠"
    parts = [("HTTP", row.get("enable_http", True)), (https, row.get("enable_https", True))]
    return " | ".join(name for name, enabled in parts if enabled) or "no listeners"


def expiry(row: Row) -> str | None:
    """ "in 89d", "in 5h", "expired 2d ago": always relative, however far away."""
    when = parse_time(row.get("expires_at"))
    if when is None:
        return None
    seconds = int((when - datetime.now(UTC)).total_seconds())
    size, unit = next(((s, u) for s, u in TIME_UNITS if abs(seconds) >= s), (1, "s"))
    amount = f"{abs(seconds) // size}{unit}"
    return f"in {amount}" if seconds >= 0 else f"expired {amount} ago"


def service_ports(row: Row) -> str | None:
    """Host→container port mappings, e.g. "3000→80"."""
    mappings = [(p.get("host"), p.get("container")) for p in row.get("port_configs") or []]
    if row.get("external_port") and row.get("internal_port"):
        mappings.append((row["external_port"], row["internal_port"]))
    return ", ".join(f"{host}→{container}" for host, container in mappings) or None


def service_resources(row: Row) -> str | None:
    """Memory and CPU limits, e.g. "512m/1cpu"."""
    if is_missing(row.get("memory_limit")) or is_missing(row.get("cpu_limit")):
        return None
    return f"{row['memory_limit']}/{row['cpu_limit']:g}cpu"


def route_target(row: Row) -> str:
    return f"{row.get('target_type')}:{row.get('target_value')}"


def _is(field: str, expected: Any = True) -> Callable[[Row], bool]:
    return lambda row: row.get(field) == expected


def _has_https(row: Row) -> bool:
    return bool(row.get("enable_https", True) and row.get("cert_name"))


def active_count(field: str) -> Callable[[Row], Any]:
    """The `active` figure of a `{"total", "active", ...}` field."""
    return lambda row: (row.get(field) or {}).get("active")


def _has_active(field: str) -> Callable[[Row], bool]:
    return lambda row: bool(active_count(field)(row))


def _is_error(row: Row) -> bool:
    return int(row.get("status") or row.get("status_code") or 0) >= 400


def answered_by(row: Row) -> str | None:
    """Who answered a logged request: the upstream, or the gateway itself and why."""
    reason = row.get("gateway_reason")
    if reason:
        return f"gateway: {reason}"
    return row.get("upstream") or None


NAME_STYLE = "bold cyan"


def _grant_layout(key: Column, audience: Column, *times: Column, noun: str, hint: str) -> Layout:
    """OAuth sessions and access tokens: `key`, who was granted what and for which resources,
    the status, `times`, the expiry; tallied as how many, how many active, how many revoked."""
    return Layout(
        columns=(
            key,
            Column("username", "User", NAME_STYLE),
            Column("client_id", "Client", "mono"),
            Column("scope", "Scope"),
            audience,
            Column("status", "Status", "status"),
            *times,
            Column("expires_at", "Expires", derive=expiry),
        ),
        tallies=(
            Tally(noun, noun + "s"),
            Tally("active", counts=_is("status", "active")),
            Tally("revoked", counts=_is("status", "revoked")),
        ),
        empty_hint=hint,
    )


LAYOUTS: dict[Kind, Layout] = {
    Kind.TOKENS: Layout(
        columns=(
            Column("name", "Token Name", NAME_STYLE),
            Column("cert_email", "Certificate Email"),
            Column("github_users", "GitHub Users"),
            Column("created_at", "Created", "date"),
            Column("created_by", "Owner"),
            Column("is_admin", "Admin", "bool"),
            Column("suspended", "Suspended", cut=40),
        ),
        tallies=(
            Tally("token", "tokens"),
            Tally("admin", counts=_is("is_admin")),
            Tally("suspended", counts=lambda row: row.get("suspended") is not None),
        ),
        empty_hint="No tokens yet. Create one: just token-generate <name> [email]",
    ),
    Kind.CERTIFICATES: Layout(
        columns=(
            Column("cert_name", "Certificate", NAME_STYLE),
            Column("domains", "Domains"),
            Column("status", "Status", "status"),
            Column("expires_at", "Expires", derive=expiry),
            Column("last_error", "Last Error", cut=60),
            Column("created_by", "Owner"),
        ),
        tallies=(
            Tally("certificate", "certificates"),
            Tally("active", counts=_is("status", "active")),
            Tally("pending", counts=_is("status", "pending")),
            Tally("error", "errors", counts=_is("status", "error")),
        ),
        empty_hint="No certificates yet. Create one: just cert-create <name> <domain>",
    ),
    Kind.PROXIES: Layout(
        columns=(
            Column("hostname", "Hostname", NAME_STYLE),
            Column("target_url", "Target"),
            Column("status", "Status", derive=proxy_status),
            Column("auth_enabled", "Auth", "bool"),
            Column("cert_name", "Certificate"),
        ),
        tallies=(
            Tally("proxy", "proxies"),
            Tally("HTTPS", counts=_has_https),
            Tally("with auth", counts=_is("auth_enabled")),
        ),
        empty_hint="No proxies yet. Create one: just proxy-create <hostname> <target-url>",
        legend=(
            ("HTTPS✓", "served with its certificate"),
            ("HTTPS⚠", "on, but no certificate yet: HTTP only (just cert-list)"),
        ),
    ),
    Kind.SERVICES: Layout(
        columns=(
            Column("service_name", "Service", NAME_STYLE),
            Column("service_type", "Type"),
            Column("status", "Status", "status"),
            Column("ports", "Ports", derive=service_ports),
            Column("resources", "Resources", derive=service_resources),
        ),
        tallies=(
            Tally("Docker", counts=_is("service_type", "docker")),
            Tally("External", counts=_is("service_type", "external")),
            Tally("Internal", counts=_is("service_type", "internal")),
        ),
        empty_hint="No services yet. Create one: just service-create <name> <image>",
    ),
    Kind.ROUTES: Layout(
        columns=(
            Column("route_id", "Route ID", "mono"),
            Column("path_pattern", "Path", NAME_STYLE),
            Column("target", "Target", derive=route_target),
            Column("priority", "Priority", "number"),
            Column("methods", "Methods"),
            Column("scope", "Scope"),
            Column("enabled", "Enabled", "bool"),
        ),
        tallies=(
            Tally("route", "routes"),
            Tally("enabled", counts=_is("enabled")),
            Tally("proxy-scoped", counts=_is("scope", "proxy")),
        ),
        empty_hint="No routes yet. Create one: just route-create <path> <target-type> <target>",
    ),
    Kind.OAUTH_CLIENTS: Layout(
        columns=(
            Column("client_id", "Client ID", "mono"),
            Column("client_name", "Name", NAME_STYLE),
            Column("origin", "Origin"),
            Column("scope", "Scope"),
            Column("redirect_uris", "Redirect URIs"),
            Column("sessions", "Active Sessions", "number", derive=active_count("sessions")),
            Column("tokens", "Active Tokens", "number", derive=active_count("tokens")),
            Column("created_at", "Created", "date"),
            Column("expires_at", "Expires", "date"),
        ),
        tallies=(
            Tally("client", "clients"),
            Tally("with active sessions", counts=_has_active("sessions")),
        ),
        empty_hint="No OAuth clients yet. MCP clients register themselves at /register",
    ),
    Kind.OAUTH_SESSIONS: _grant_layout(
        Column("session_id", "Session", "mono"),
        Column("resources", "Resources"),
        Column("tokens", "Active Tokens", "number", derive=active_count("tokens")),
        Column("created_at", "Started", "date"),
        noun="session",
        hint="No active sessions. A session starts when a user logs in through a client.",
    ),
    Kind.OAUTH_TOKENS: _grant_layout(
        Column("jti", "JTI", "mono"),
        Column("audience", "Audience"),
        Column("issued_at", "Issued", "date"),
        noun="token",
        hint="No access tokens.",
    ),
    Kind.RESOURCES: Layout(
        columns=(
            Column("uri", "URI", NAME_STYLE),
            Column("name", "Name"),
            Column("proxy_target", "Proxy"),
            Column("scopes", "Scopes"),
            Column("metadata_url", "Metadata URL"),
        ),
        tallies=(Tally("resource", "resources"),),
        empty_hint="No protected resources registered. Register the proxies' resources: "
        "proxy-client resource auto-register",
    ),
    Kind.LOGS: Layout(
        columns=(
            Column("timestamp", "Time", "date"),
            Column("client_ip", "Client IP", "mono"),
            Column("method", "Method"),
            Column("hostname", "Host", NAME_STYLE),
            Column("request_path", "Path"),
            Column("protocol", "Protocol"),
            Column("status", "Status", "status_code"),
            Column("duration_ms", "ms", "number"),
            Column("user", "User"),
            Column("gateway_reason", "Answered By", derive=answered_by),
        ),
        tallies=(Tally("request", "requests"), Tally("error", "errors", counts=_is_error)),
        empty_hint="No requests logged in this window. Try a longer --hours.",
    ),
}


def generic_layout(rows: Sequence[Row]) -> Layout:
    """Columns for objects no layout describes: every field, in order of first appearance."""
    fields = list(dict.fromkeys(field for row in rows for field in row))
    sample = {field: next(row[field] for row in rows if field in row) for field in fields}
    columns = tuple(
        Column(field, field.replace("_", " ").title(), infer_style(field, sample[field]))
        for field in fields
    )
    return Layout(columns, (Tally("item", "items"),), empty_hint="Nothing to show.")


def layout_for(kind: Kind | None, rows: Sequence[Row]) -> Layout:
    return LAYOUTS[kind] if kind else generic_layout(rows)


def style_for(field: str, value: Any, layout: Layout | None) -> str:
    """The style the layout gives `field`, or one inferred from its name and value."""
    column = layout.column_for(field) if layout else None
    return column.style if column else infer_style(field, value)
