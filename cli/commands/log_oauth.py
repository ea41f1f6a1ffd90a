"""`proxy-client log oauth|oauth-debug|oauth-flow`: OAuth activity in the request log.

They join the `log` group (see `cli.main`); `just logs-oauth`, `logs-oauth-debug` and
`logs-oauth-flow` call them. An OAuth request is one to the authorization
server's endpoints, or one made with an OAuth client's token; the flow's steps are events
(`oauth.registration`, `oauth.token_issued`, ...) found by the client id.
"""

from __future__ import annotations

from collections import Counter
from typing import Annotated, Any

from cyclopts import Parameter

from cli.commands.logs import Hours, Limit, detailed, logs_of, show
from cli.commands.oauth import OAUTH_PATHS
from cli.errors import CliError
from cli.session import Session

OAUTH_PREFIXES = (*OAUTH_PATHS, "/.well-known/oauth-protected-resource")


def _is_oauth(entry: dict[str, Any]) -> bool:
    path = str(entry.get("request_path", "")).partition("?")[0]
    return bool(entry.get("client_id")) or path.startswith(OAUTH_PREFIXES)


def oauth(
    ip: Annotated[str, Parameter(help="The client IP.")],
    *,
    hours: Hours = 24,
    limit: Limit = 500,
    session: Session,
) -> None:
    """OAuth activity of one client IP, summarised: each endpoint and status with its count,
    and the users and OAuth clients seen (`just logs-oauth`)."""
    entries = [e for e in logs_of(session, "ip", ip, hours=hours, limit=limit)
               if _is_oauth(e)]  # fmt: skip
    steps = Counter(
        (str(e["request_path"]).partition("?")[0], e.get("status"), e.get("user") or "",
         e.get("client_id") or "")
        for e in entries
    )  # fmt: skip
    rows = [
        {"path": path, "status": status, "user": user, "client_id": client, "requests": count}
        for (path, status, user, client), count in steps.most_common()
    ]
    session.show(rows)


def oauth_debug(
    ip: Annotated[str, Parameter(help="The client IP.")],
    *,
    hours: Hours = 24,
    limit: Limit = 100,
    session: Session,
) -> None:
    """Every OAuth request of one client IP with every field (`just logs-oauth-debug`)."""
    entries = logs_of(session, "ip", ip, hours=hours, limit=1000)
    detailed(session, [entry for entry in entries if _is_oauth(entry)][:limit])


def oauth_flow(
    *,
    client_id: Annotated[str | None, Parameter(help="The OAuth client id.")] = None,
    username: Annotated[str | None, Parameter(help="The GitHub user.")] = None,
    hours: Hours = 1,
    session: Session,
) -> None:
    """One client's or user's OAuth flow step by step, oldest first: registration,
    authorization, consent, token and the requests made with its tokens
    (`just logs-oauth-flow`)."""
    if not client_id and not username:
        raise CliError("name a --client-id or a --username (or both)")
    found: dict[tuple[Any, ...], dict[str, Any]] = {}
    if client_id:
        for entry in logs_of(session, "client", client_id, hours=hours, limit=1000):
            found[(entry["timestamp"], entry["client_ip"], entry["request_path"])] = entry
    if username:
        for entry in logs_of(session, "search", user=username, hours=hours, limit=1000):
            found[(entry["timestamp"], entry["client_ip"], entry["request_path"])] = entry
    steps = sorted(found.values(), key=lambda entry: float(entry["timestamp"]))
    show(session, [entry for entry in steps if _is_oauth(entry) or entry.get("user")])
