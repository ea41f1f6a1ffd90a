"""`proxy-client service register-oauth` and `service cleanup-orphaned`: setup and upkeep.

They join the `service` group (see `cli.main`); `just service-register-oauth` and
`just service-cleanup-orphaned` call them.
"""

from __future__ import annotations

from typing import Annotated, Any

from cyclopts import Parameter

from cli.client import api_path
from cli.columns import Kind
from cli.commands.services import EXTERNAL, external_path
from cli.config import OutputFormat
from cli.session import Session

OAUTH_SERVICE = "oauth"
OAUTH_DESCRIPTION = "OAuth 2.1 Authorization Server"
METADATA = "/.well-known/oauth-authorization-server"
CLEANUP = api_path("cleanup", "orphaned")


def register_oauth(
    *,
    url: Annotated[
        str | None,
        Parameter(help="Where the server is (default: the gateway's issuer, from its metadata)."),
    ] = None,
    name: Annotated[str, Parameter(help="The service's name.")] = OAUTH_SERVICE,
    session: Session,
) -> None:
    """Register the gateway's OAuth authorization server as the external service `oauth`, at
    its issuer URL (OAUTH_ISSUER, else https://auth.BASE_DOMAIN); run again, it keeps the
    service or points it at the issuer."""
    issuer = url or str(session.api.request("GET", METADATA, auth=False)["issuer"])
    existing = session.api.request("GET", external_path(name), also_accept=(404,))
    if "service_name" not in existing:
        body = {"service_name": name, "target_url": issuer, "description": OAUTH_DESCRIPTION}
        session.show(session.api.post(EXTERNAL, body), kind=Kind.SERVICES)
    elif existing["target_url"].rstrip("/") != issuer.rstrip("/"):
        body = {"target_url": issuer, "description": OAUTH_DESCRIPTION}
        session.show(session.api.put(external_path(name), body), kind=Kind.SERVICES)
    else:
        session.show(existing, kind=Kind.SERVICES)


def cleanup_orphaned(
    *,
    dry_run: Annotated[
        bool, Parameter(help="Only list what would be removed.", negative=())
    ] = False,
    session: Session,
) -> None:
    """Remove what an older or crashed gateway left behind (admin only): records whose owner
    token is gone, and keys that point at nothing; odd but possibly meant ones are listed as
    `keep` and left alone."""
    report: dict[str, Any] = session.api.post(CLEANUP + ("?dry_run=true" if dry_run else ""), None)
    if session.output.format is not OutputFormat.TABLE:
        session.show(report)
        return
    orphans = report["orphans"]
    if orphans:
        columns = ("action", "kind", "name", "problem")
        session.show([{column: orphan[column] for column in columns} for orphan in orphans])
    changing = sum(1 for orphan in orphans if orphan["action"] != "keep")
    if dry_run:
        summary = f"Dry run: {changing} would be removed, nothing was changed."
    else:
        summary = f"Removed {report['removed']}." if orphans else "No orphans found."
    session.output.console.print(summary)
