"""`proxy-client proxy …`: proxy targets, with their `auth` and `resource` settings."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from cyclopts import App, Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import comma_list, header_map, json_object, present
from cli.config import OutputFormat
from cli.session import AllFields, Session
from cli.waiting import DEFAULT_TIMEOUT, Timeout, Wait, progress_console, wait_for_certificate

ALL_PROXIES = api_path("proxy", "targets", "")  # the collection's path ends with a slash
RESOURCE_SUMMARY = ("hostname", "resource_endpoint", "resource_scopes", "resource_stateful")

app = App(name="proxy", help="Manage proxy targets (a public hostname forwarded to a backend).")
auth = App(name="auth", help="A proxy's OAuth settings.")
resource = App(name="resource", help="A proxy's protected resource metadata (RFC 9728).")
app.command(auth)
app.command(resource)

Hostname = Annotated[str, Parameter(help="The proxy's public hostname.")]
TargetUrl = Annotated[str, Parameter(help="The backend, an http:// or https:// URL.")]
Headers = Annotated[
    list[str] | None,
    Parameter(help="NAME=VALUE, repeatable; replaces all of them ('' for none).", negative=()),
]
Csv = Annotated[str | None, Parameter(help="A comma-separated list.")]


def proxy_path(hostname: str, *rest: str) -> str:
    return api_path("proxy", "targets", hostname, *rest)


@app.command
def create(
    hostname: Hostname,
    target_url: TargetUrl,
    *,
    cert_name: Annotated[str | None, Parameter(help="Its certificate's name.")] = None,
    http: Annotated[bool, Parameter(help="Serve it over HTTP.")] = True,
    https: Annotated[bool, Parameter(help="Serve it over HTTPS.")] = True,
    preserve_host: Annotated[bool, Parameter(help="Send the original Host upstream.")] = True,
    email: Annotated[str | None, Parameter(help="Email for its ACME certificate.")] = None,
    staging: Annotated[bool, Parameter(help="Use ACME staging for its certificate.")] = False,
    wait: Wait = False,
    timeout: Timeout = DEFAULT_TIMEOUT,
    session: Session,
) -> None:
    """Create a proxy owned by the calling token, and say what happened to its HTTPS
    (certificate ordered, reused or skipped, and why); --wait follows the certificate until
    it is issued or fails."""
    body = {
        "hostname": hostname,
        "target_url": target_url,
        "enable_http": http,
        "enable_https": https,
        "preserve_host_header": preserve_host,
        "staging": staging,
        **present(cert_name=cert_name, cert_email=email),
    }
    created, headers = session.api.answer("POST", ALL_PROXIES, body=body)
    outcome = https_outcome(headers)
    followed = (outcome or {}).get("cert_name") or cert_name
    if wait and followed:
        certificate = wait_for_certificate(
            session.api, followed, timeout=timeout, console=progress_console()
        )
        created = session.api.get(proxy_path(hostname))
        outcome = {**(outcome or {}), "certificate_status": certificate["status"]}
    if session.output.format is not OutputFormat.TABLE:
        session.show({**created, "https_outcome": outcome} if outcome else created)
        return
    session.show(created, kind=Kind.PROXIES)
    session.note(certificate_note(outcome))


def https_outcome(headers: Mapping[str, str]) -> dict[str, str] | None:
    """What the gateway did about the new proxy's HTTPS, from the response headers
    `X-Certificate-Action`, `-Detail` and `-Name` (the body is the proxy record alone)."""
    action = headers.get("x-certificate-action")
    if action is None:
        return None
    outcome = {"action": action, "detail": headers.get("x-certificate-detail", "")}
    name = headers.get("x-certificate-name")
    return {**outcome, "cert_name": name} if name else outcome


def certificate_note(outcome: Mapping[str, str] | None) -> str | None:
    """The outcome as a line under the table."""
    if outcome is None:
        return None
    note = f"HTTPS, certificate {outcome['action']}: {outcome['detail']}"
    if outcome.get("certificate_status") == "active":
        return note + "; issued, HTTPS is served"
    if outcome["action"] == "ordered":
        note += "; it serves HTTPS once issued (just cert-list shows its status; --wait waits)"
    return note


@app.command(name="list")
def list_proxies(*, session: Session) -> None:
    """List every proxy."""
    session.show(session.api.get(ALL_PROXIES), kind=Kind.PROXIES)


@app.command
def show(hostname: Hostname, *, all_fields: AllFields = False, session: Session) -> None:
    """Show one proxy: its key settings, or every one with --all."""
    proxy = session.api.get(proxy_path(hostname))
    session.show(proxy, kind=Kind.PROXIES, all_fields=all_fields)


@app.command
def update(
    hostname: Hostname,
    *,
    target_url: Annotated[str | None, Parameter(help="A new backend URL.")] = None,
    cert_name: Annotated[str | None, Parameter(help="A new certificate name.")] = None,
    enabled: Annotated[bool | None, Parameter(help="Enable or disable the proxy.")] = None,
    http: Annotated[bool | None, Parameter(help="Serve it over HTTP.")] = None,
    https: Annotated[bool | None, Parameter(help="Serve it over HTTPS.")] = None,
    preserve_host: Annotated[bool | None, Parameter(help="Send the original Host.")] = None,
    header: Headers = None,
    response_header: Headers = None,
    session: Session,
) -> None:
    """Change the given settings of a proxy (its owner or the admin)."""
    body = present(
        target_url=target_url,
        cert_name=cert_name,
        enabled=enabled,
        enable_http=http,
        enable_https=https,
        preserve_host_header=preserve_host,
        custom_headers=header_map(header, "--header"),
        custom_response_headers=header_map(response_header, "--response-header"),
    )
    session.show(session.api.put(proxy_path(hostname), body), kind=Kind.PROXIES)


@app.command
def delete(
    hostname: Hostname,
    *,
    delete_cert: Annotated[bool, Parameter(help="Delete its certificate too.")] = False,
    force: Annotated[bool, Parameter(help="No error when there is no such proxy.")] = False,
    session: Session,
) -> None:
    """Delete a proxy (its owner or the admin)."""
    path = proxy_path(hostname) + ("?delete_certificate=true" if delete_cert else "")
    deleted = session.api.request("DELETE", path, also_accept={404} if force else ())
    if deleted.get("error") == "not_found":
        deleted = {"hostname": hostname, "deleted": False, "detail": deleted["detail"]}
    session.show(deleted)


@auth.command(name="enable")
def auth_enable(
    hostname: Hostname,
    *,
    auth_proxy: Annotated[str | None, Parameter(help="Hostname of the auth server.")] = None,
    mode: Annotated[str | None, Parameter(help="forward, redirect or passthrough.")] = None,
    scopes: Csv = None,
    audiences: Csv = None,
    session: Session,
) -> None:
    """Turn auth on for a proxy, optionally setting its auth server, mode, scopes, audiences."""
    body = present(
        auth_proxy=auth_proxy,
        auth_mode=mode,
        auth_allowed_scopes=comma_list(scopes),
        auth_allowed_audiences=comma_list(audiences),
    )
    session.show(session.api.post(proxy_path(hostname, "auth"), body))


@auth.command(name="config")
def auth_config(
    hostname: Hostname,
    *,
    users: Csv = None,
    emails: Csv = None,
    groups: Csv = None,
    scopes: Csv = None,
    audiences: Csv = None,
    session: Session,
) -> None:
    """Set who may pass (and turn auth on): GitHub users ('*' for all), emails, groups, scopes,
    audiences. An option given as '' sets null: for users, the global default."""
    given = {
        "auth_required_users": users,
        "auth_required_emails": emails,
        "auth_required_groups": groups,
        "auth_allowed_scopes": scopes,
        "auth_allowed_audiences": audiences,
    }
    body = {field: comma_list(value) for field, value in given.items() if value is not None}
    session.show(session.api.post(proxy_path(hostname, "auth"), body))


@auth.command(name="disable")
def auth_disable(hostname: Hostname, *, session: Session) -> None:
    """Turn auth off and reset every auth setting."""
    session.show(session.api.delete(proxy_path(hostname, "auth")))


@auth.command(name="show")
def auth_show(hostname: Hostname, *, session: Session) -> None:
    """Show a proxy's auth settings."""
    session.show(session.api.get(proxy_path(hostname, "auth")))


@resource.command(name="set")
def resource_set(
    hostname: Hostname,
    *,
    endpoint: Annotated[str | None, Parameter(help="The MCP endpoint path (/mcp).")] = None,
    scopes: Csv = None,
    stateful: Annotated[bool, Parameter(help="The server keeps session state.")] = False,
    override_backend: Annotated[bool, Parameter(help="Ignore the backend's metadata.")] = False,
    bearer_methods: Csv = None,
    doc_suffix: Annotated[str | None, Parameter(help="Documentation path (/docs).")] = None,
    versions: Csv = None,
    server_info: Annotated[str | None, Parameter(help="A JSON object.")] = None,
    custom_metadata: Annotated[str | None, Parameter(help="A JSON object.")] = None,
    hacker_one_research: Annotated[
        str | None, Parameter(help="Send X-HackerOne-Research: VALUE on every response.")
    ] = None,
    session: Session,
) -> None:
    """Set a proxy's protected resource metadata; what is not given takes its default."""
    body: dict[str, Any] = {
        "resource_stateful": stateful,
        "resource_override_backend": override_backend,
        **present(
            resource_endpoint=endpoint,
            resource_scopes=comma_list(scopes),
            resource_bearer_methods=comma_list(bearer_methods),
            resource_documentation_suffix=doc_suffix,
            resource_versions=comma_list(versions),
            resource_server_info=json_object(server_info, "--server-info"),
            resource_custom_metadata=json_object(custom_metadata, "--custom-metadata"),
            hacker_one_research_header=hacker_one_research,
        ),
    }
    session.show(session.api.post(proxy_path(hostname, "mcp"), body))


@resource.command(name="clear")
def resource_clear(hostname: Hostname, *, session: Session) -> None:
    """Remove a proxy's protected resource metadata."""
    session.show(session.api.delete(proxy_path(hostname, "mcp")))


@resource.command(name="show")
def resource_show(hostname: Hostname, *, session: Session) -> None:
    """Show a proxy's protected resource metadata."""
    session.show(session.api.get(proxy_path(hostname, "mcp")))


@resource.command(name="list")
def resource_list(*, session: Session) -> None:
    """List the proxies that serve protected resource metadata."""
    proxies = session.api.get(ALL_PROXIES)
    rows = [
        {field: proxy.get(field) for field in RESOURCE_SUMMARY}
        for proxy in proxies
        if proxy.get("resource_endpoint")
    ]
    session.show(rows)
