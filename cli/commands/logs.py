"""`proxy-client log …`: the gateway's request log (`/api/v1/logs/*`), as the `logs-*` recipes
show it: recent requests, by IP, hostname, OAuth client or user, errors, OAuth activity,
statistics, the live stream (`follow`), a test request, and clearing (admin only).

An owner token sees the requests of its own hostnames only; the admin sees all.
"""

from __future__ import annotations

import time
from typing import Annotated, Any
from urllib.parse import urlencode

from cyclopts import App, Parameter
from rich.text import Text

from cli.client import api_path
from cli.columns import Kind
from cli.commands.values import present
from cli.config import OutputFormat
from cli.session import CliSession, Session
from cli.visible import one_line

app = App(name="log", help="Query the request log (recent, by IP/host/client, errors, stats).")

Hours = Annotated[float, Parameter(help="How far back to look, in hours.")]
Limit = Annotated[int, Parameter(help="At most this many entries, newest first.")]
Event = Annotated[str | None, Parameter(help="request, websocket or sse.")]
Level = Annotated[
    str | None, Parameter(help="INFO (1xx-3xx), WARNING (4xx) or ERROR (5xx, no answer).")
]
Hostname = Annotated[str | None, Parameter(help="Only this hostname.")]

FOLLOW_WAIT_SECONDS = 25
TEST_WAIT_SECONDS = 5.0


def logs_of(session: CliSession, *endpoint: str, **params: Any) -> list[dict[str, Any]]:
    query = urlencode({name: value for name, value in params.items() if value is not None})
    found: list[dict[str, Any]] = session.api.get(
        api_path("logs", *endpoint) + (f"?{query}" if query else "")
    )["logs"]
    return found


def show(session: CliSession, entries: list[dict[str, Any]]) -> None:
    session.show(entries, kind=Kind.LOGS)


@app.command
def recent(
    *,
    hours: Hours = 1,
    event: Event = None,
    level: Level = None,
    hostname: Hostname = None,
    limit: Limit = 50,
    session: Session,
) -> None:
    """Recent requests (`just logs`)."""
    params = present(hours=hours, event=event, level=level, hostname=hostname, limit=limit)
    show(session, logs_of(session, "search", **params))


@app.command
def search(
    *,
    query: Annotated[
        str | None,
        Parameter(
            help="Terms: status:500 host:H ip:IP user:U client:C method:M protocol:HTTP/2 "
            "path:/p level:L event:E errors slow, and bare words."
        ),
    ] = None,
    hours: Hours = 24,
    event: Event = None,
    level: Level = None,
    hostname: Hostname = None,
    status: Annotated[int | None, Parameter(help="Only this HTTP status.")] = None,
    path: Annotated[str | None, Parameter(help="Only paths starting with this.")] = None,
    method: Annotated[str | None, Parameter(help="Only this method.")] = None,
    protocol: Annotated[
        str | None, Parameter(help="Only this protocol: HTTP/1.1, HTTP/1.0 or HTTP/2.")
    ] = None,
    user: Annotated[str | None, Parameter(help="Only this authenticated user.")] = None,
    ip: Annotated[str | None, Parameter(help="Only this client IP.")] = None,
    client_id: Annotated[str | None, Parameter(help="Only this OAuth client.")] = None,
    errors: Annotated[bool, Parameter(help="Only 4xx and 5xx.", negative=())] = False,
    slow: Annotated[bool, Parameter(help="Only slow requests.", negative=())] = False,
    limit: Limit = 100,
    session: Session,
) -> None:
    """Search the request log with filters (`just logs-search`)."""
    params = present(
        q=query, hours=hours, event=event, level=level, hostname=hostname, status=status,
        path=path, method=method, protocol=protocol, user=user, ip=ip, client_id=client_id,
        limit=limit,
        errors="true" if errors else None, slow="true" if slow else None,
    )  # fmt: skip
    show(session, logs_of(session, "search", **params))


@app.command(name="ip")
def by_ip(
    ip: Annotated[str, Parameter(help="The client IP.")],
    *,
    hours: Hours = 24,
    event: Event = None,
    level: Level = None,
    limit: Limit = 100,
    session: Session,
) -> None:
    """Requests from one client IP (`just logs-ip`)."""
    params = present(hours=hours, event=event, level=level, limit=limit)
    show(session, logs_of(session, "ip", ip, **params))


@app.command(name="host")
def by_host(
    hostname: Annotated[str, Parameter(help="The proxy's hostname.")],
    *,
    hours: Hours = 24,
    limit: Limit = 100,
    session: Session,
) -> None:
    """Requests to one hostname (`just logs-host`)."""
    show(session, logs_of(session, "search", hostname=hostname, hours=hours, limit=limit))


@app.command(name="client")
def by_client(
    client_id: Annotated[str, Parameter(help="The OAuth client id.")],
    *,
    hours: Hours = 24,
    event: Event = None,
    level: Level = None,
    limit: Limit = 100,
    session: Session,
) -> None:
    """Requests made with one OAuth client's tokens (`just logs-client`)."""
    params = present(hours=hours, event=event, level=level, limit=limit)
    show(session, logs_of(session, "client", client_id, **params))


@app.command
def errors(*, hours: Hours = 1, limit: Limit = 50, session: Session) -> None:
    """Requests answered 4xx or 5xx (`just logs-errors`)."""
    show(session, logs_of(session, "errors", hours=hours, limit=limit))


@app.command(name="errors-debug")
def errors_debug(
    *,
    hours: Hours = 1,
    include_warnings: Annotated[
        bool, Parameter(help="4xx too (default: 5xx and failed answers only).")
    ] = False,
    limit: Limit = 50,
    session: Session,
) -> None:
    """Failed requests with every field: upstream, route, reason, bytes, TLS, user, client
    (`just logs-errors-debug`)."""
    level = None if include_warnings else "ERROR"
    detailed(session, logs_of(session, "errors", hours=hours, limit=limit, level=level))


def detailed(session: CliSession, entries: list[dict[str, Any]]) -> None:
    """One record table per entry (tables), or the entries as they are (other formats)."""
    if session.output.format is not OutputFormat.TABLE:
        session.show(entries)
        return
    if not entries:
        session.output.console.print("No matching requests in this window.")
    for entry in entries:
        session.show(entry, kind=Kind.LOGS)


@app.command
def stats(*, hours: Hours = 24, session: Session) -> None:
    """Requests and errors per hour, unique visitors and response-time percentiles per
    hostname, and the logger's own counters (`just logs-stats`)."""
    report = session.api.get(api_path("logs", "events") + f"?hours={hours:g}")
    if session.output.format is not OutputFormat.TABLE:
        session.show(report)
        return
    console = session.output.console
    if "requests" in report:
        console.print(f"Requests: {report['requests']}  Errors: {report['errors']}  "
                      f"(last {hours:g}h)")  # fmt: skip
        if report["by_hour"]:
            session.show(report["by_hour"])
    if report["hosts"]:
        session.show(report["hosts"])
    session.show(report["logger"])


@app.command
def follow(
    *,
    hostname: Hostname = None,
    session: Session,
) -> int:
    """Follow the live request stream until Ctrl-C (`just logs-follow`)."""
    answer = session.api.get(api_path("logs", "follow") + "?limit=20")
    try:
        while True:
            entries = [e for e in answer["logs"] if hostname in (None, e.get("hostname"))]
            if entries:
                _print_lines(session, entries)
            params = urlencode({"after": answer["last"], "wait": FOLLOW_WAIT_SECONDS})
            answer = session.api.get(api_path("logs", "follow") + f"?{params}")
    except KeyboardInterrupt:
        return 0


def _print_lines(session: CliSession, entries: list[dict[str, Any]]) -> None:
    """One line per request as it arrives (a table would wait for the end)."""
    if session.output.format is not OutputFormat.TABLE:
        for entry in entries:
            session.show(entry)
        return
    colours = {2: "green", 3: "yellow", 4: "red", 5: "bold red"}
    for entry in entries:
        status = int(entry.get("status") or 0)
        stamp = time.strftime("%H:%M:%S", time.localtime(float(entry["timestamp"])))
        user = f" {entry['user']}" if entry.get("user") else ""
        protocol = f" {entry['protocol']}" if entry.get("protocol") else ""
        # Plain text with one styled part: the path, host and user are whatever a client sent,
        # and as console markup `[/x]` killed the follower and `[green]` forged a line.
        # (and `visible`: control characters spelled out, as every string from the API)
        # (`one_line`: a newline or tab sent by a client is spelled out, not a line of its own)
        line = Text.assemble(
            one_line(
                f"{stamp} {entry['client_ip']} {entry['method']} {entry['hostname']}"
                f"{entry['request_path']}{protocol} "
            ),
            (str(status), colours.get(status // 100, "")),
            one_line(f" {float(entry['duration_ms']):.1f}ms{user}"),
        )
        session.output.console.print(line, highlight=False)


@app.command
def test(*, session: Session) -> int:
    """Send a test request through the gateway and show its entry arriving in the log
    (`just logs-test`); exits 1 when it does not arrive within a few seconds."""
    sent = session.api.post(api_path("logs", "test"), None)
    session.output.console.print(
        f"Sent GET /logs-test/{sent['marker']} to {sent['hostname']} (answered {sent['status']})"
    )
    deadline = time.monotonic() + TEST_WAIT_SECONDS
    while time.monotonic() < deadline:
        found = logs_of(session, "search", q=sent["marker"], hours=1, limit=1)
        if found:
            show(session, found)
            session.output.console.print("Request logging works.")
            return 0
        time.sleep(0.2)
    session.output.console.print(
        "The test request was not logged in time: is REQUEST_LOG_ENABLED off, or Redis "
        "failing? (just logs-stats shows the logger's counters)"
    )
    return 1


@app.command
def clear(*, session: Session) -> None:
    """Delete every request log entry, index and statistic (admin only; `just logs-clear`)."""
    answer = session.api.delete(api_path("logs"))
    session.output.console.print(f"Deleted {answer['deleted']} log keys.")
