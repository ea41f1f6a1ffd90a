"""`/api/v1/logs`: the request log, queried (owner-scoped) and cleared (admin only).

Every read goes through `oauthproxy.tenancy.logs.readable_hosts`: an owner token sees entries of
its own hostnames only. Queries and their cost are in `oauthproxy.logs.queries`.
"""

from __future__ import annotations

import ipaddress
import math
import secrets
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace

import httpx
import trio
from quart import Blueprint, current_app
from quart_schema import validate_querystring

from oauthproxy.api import streams
from oauthproxy.api.auth import Rechecked, reauthentication, requires_token
from oauthproxy.api.contract import Answer, answers, path_parameters
from oauthproxy.api.errors import ApiError
from oauthproxy.api.ownership import Json, caller, storage
from oauthproxy.api.state import app_state
from oauthproxy.logs import schema
from oauthproxy.logs.queries import (
    LogFilter,
    decorated,
    matches,
    parse_query,
    percentiles,
    protocol_named,
    search,
)
from oauthproxy.models.common import IP_ADDRESS_SCHEMA
from oauthproxy.models.errors import ErrorBody
from oauthproxy.models.logs import FollowQuery, LogQuery, RecentQuery, StatsQuery
from oauthproxy.tenancy.logs import check_clear, readable_hosts

logs = Blueprint("logs", __name__, url_prefix="/api/v1/logs")

FOLLOW_POLL_SECONDS = 0.25
FOLLOWS_PER_TOKEN = 4
"""Long polls of `/follow` one token may hold open at once (on one gateway): each holds a
connection and polls Redis every FOLLOW_POLL_SECONDS, so a token cannot open them by the
thousand."""
TEST_HOST = "logs-test.invalid"
"""`.invalid` (RFC 2606) can never be a proxy's real hostname."""


async def _scope() -> Mapping[str, float] | None:
    who = caller()
    if who.is_admin:
        return None
    return readable_hosts(who, await storage().proxies.all())


async def _answer(query: LogFilter) -> Json:
    settings = app_state(current_app).settings
    found = await search(storage().request_logs, query, slow_seconds=settings.log_slow_seconds)
    return {"hours": query.hours, "count": len(found), "logs": found}


def _recent(args: RecentQuery, hosts: Mapping[str, float] | None, **filters: object) -> LogFilter:
    level = args.level.value if args.level else None
    base = LogFilter(hours=args.hours, limit=args.limit, event=args.event, level=level, hosts=hosts)
    return replace(base, **filters)  # type: ignore[arg-type]


@logs.get("/search")
@requires_token()
@validate_querystring(LogQuery)
async def search_logs(query_args: LogQuery) -> Json:
    """Entries matching every filter given (and the search terms of `q`), newest first."""
    args = query_args
    base = LogFilter(
        hours=args.hours,
        limit=args.limit,
        event=args.event,
        level=args.level.value if args.level else None,
        hostname=args.hostname.lower() if args.hostname else None,
        status=args.status,
        path=args.path,
        method=args.method.upper() if args.method else None,
        protocol=protocol_named(args.protocol) if args.protocol else None,
        user=args.user,
        ip=args.ip,
        client_id=args.client_id,
        errors=args.errors,
        slow=args.slow,
        hosts=await _scope(),
    )
    return await _answer(parse_query(args.q, base) if args.q else base)


@logs.get("/ip/<ip>")
@requires_token()
@path_parameters(ip=IP_ADDRESS_SCHEMA)
@validate_querystring(RecentQuery)
async def by_ip(ip: str, query_args: RecentQuery) -> Json:
    """Entries of one client IP."""
    _check_ip(ip)
    return await _answer(_recent(query_args, await _scope(), ip=ip))


@logs.get("/client/<client_id>")
@requires_token()
@validate_querystring(RecentQuery)
async def by_client(client_id: str, query_args: RecentQuery) -> Json:
    """Entries of requests made with one OAuth client's tokens."""
    return await _answer(_recent(query_args, await _scope(), client_id=client_id))


@logs.get("/errors")
@requires_token()
@validate_querystring(RecentQuery)
async def errors(query_args: RecentQuery) -> Json:
    """Entries answered with 4xx or 5xx."""
    return await _answer(_recent(query_args, await _scope(), errors=True))


@logs.get("/events")
@requires_token()
@validate_querystring(StatsQuery)
async def stats(query_args: StatsQuery) -> Json:
    """Counts per hour, unique visitors and response-time percentiles per hostname, and this
    replica's logger counters. Hourly totals and the logger's counters cover every hostname:
    the admin's alone (an owner's counters are zeros)."""
    state = app_state(current_app)
    repository = storage().request_logs
    hosts = await _scope()
    now = time.time()
    covered = min(math.ceil(query_args.hours), 168)  # whole hours; a part of one is the current
    hours = [schema.hour_of(now - 3600 * back) for back in range(covered)]
    answer: Json = {"hours": query_args.hours}
    if hosts is None:
        requests = await repository.counters([schema.requests_count(hour) for hour in hours])
        failures = await repository.counters([schema.errors_count(hour) for hour in hours])
        by_hour = [
            {"hour": hour, "requests": count, "errors": failed}
            for hour, count, failed in zip(hours, requests, failures, strict=True)
        ]
        answer["requests"] = sum(row["requests"] for row in by_hour)
        answer["errors"] = sum(row["errors"] for row in by_hour)
        answer["by_hour"] = [row for row in by_hour if row["requests"]]
        answer["redis_used_memory"] = await repository.memory()
        hostnames = sorted({proxy.hostname for proxy in await storage().proxies.all()})
    else:
        hostnames = sorted(hosts)
    answer["hosts"] = [
        {
            "hostname": hostname,
            "unique_ips": await repository.unique(
                [schema.unique_ips(hostname, hour) for hour in _hours_of(hours, hosts, hostname)]
            ),
            **{
                f"{name}_ms": value
                for name, value in percentiles(await repository.durations(hostname)).items()
            },
        }
        for hostname in hostnames
    ]
    logger = state.requests if hosts is None else None
    # the counters count every tenant's requests: an owner learns only whether logging is on
    answer["logger"] = {
        "enabled": state.settings.request_log_enabled,
        "written": logger.written if logger else 0,
        "cpu_seconds": round(logger.cpu_seconds, 6) if logger else 0.0,
        "dropped": logger.dropped if logger else 0,
        "buffered": logger.buffered if logger else 0,
        "failing": logger.failing if logger else False,
    }
    return answer


def _hours_of(hours: list[str], hosts: Mapping[str, float] | None, hostname: str) -> list[str]:
    """The `hours` whose counts an owner may read: from the hour it made the proxy on (an
    earlier owner's visitors are not its to count)."""
    if hosts is None:
        return hours
    first = schema.hour_of(hosts[hostname])
    return [hour for hour in hours if hour >= first]


@logs.get("/follow")
@answers(Answer("429", f"The token already holds {FOLLOWS_PER_TOKEN} long polls", model=ErrorBody))
@requires_token()
@validate_querystring(FollowQuery)
async def follow(query_args: FollowQuery) -> Json:
    """The live stream: entries after `after` (oldest first), or the newest `limit` entries.
    With `after`, a long poll: when there is no new entry the caller may see, it waits for one
    (checking every `FOLLOW_POLL_SECONDS`) up to `wait` seconds, then answers what it has (maybe
    nothing). Answers `last` to pass as the next `after`: past every entry looked at, those of
    other owners too, so a follower never sees one twice. The caller is authenticated again
    every few seconds of the wait (RECHECK_SECONDS): a token suspended, deleted or given a new
    secret meanwhile, or a dashboard session ended, gets the 401 instead of the entries."""
    repository = storage().request_logs
    visible = LogFilter(hosts=await _scope())
    args = query_args
    if args.after is None:
        newest = await repository.latest(count=args.limit)
        last = newest[0][0] if newest else "0-0"
        entries = [decorated(e) for _id, e in reversed(newest) if matches(e, visible)]
        return {"last": last, "count": len(entries), "logs": entries}
    with _follow_slot(caller().token_hash):
        last, deadline = args.after, trio.current_time() + args.wait
        still = Rechecked(reauthentication())
        while True:
            await still()  # a token suspended or deleted while it waits reads no more
            found = await repository.following(last, count=args.limit)
            last = found[-1][0] if found else last
            entries = [decorated(entry) for _id, entry in found if matches(entry, visible)]
            left = deadline - trio.current_time()
            if entries or left <= 0:
                return {"last": last, "count": len(entries), "logs": entries}
            await trio.sleep(min(FOLLOW_POLL_SECONDS, left))


@contextmanager
def _follow_slot(token_hash: str) -> Iterator[None]:
    """Hold one of the token's FOLLOWS_PER_TOKEN long polls for the block; 429 when it holds
    them all."""
    with streams.slot(streams.held("request_log"), token_hash, FOLLOWS_PER_TOKEN) as taken:
        if not taken:
            raise ApiError(
                429,
                "too_many_follows",
                f"this token already holds {FOLLOWS_PER_TOKEN} long polls of /api/v1/logs/follow "
                f"(at most {FOLLOWS_PER_TOKEN} at once); wait for one to answer",
                field="after",
            )
        yield


@logs.post("/test")
@requires_token()
async def test_request() -> Json:
    """Send one request to this gateway's public HTTP port, for a hostname no proxy serves
    (`logs-test.invalid`, answered 404 by the gateway itself), and answer its marker: the
    entry whose path holds it shows that requests are logged (`proxy-client log test` waits
    for it). Its entry, of no owner's hostname, is the admin's to read."""
    state = app_state(current_app)
    port = state.listeners.http
    host = state.settings.server_host
    host = "127.0.0.1" if host in ("", "0.0.0.0", "::") else host  # noqa: S104 - a bind-all
    if not port:
        raise ApiError(503, "not_ready", "the public HTTP port is not listening yet")
    marker = secrets.token_hex(8)
    async with httpx.AsyncClient(timeout=5) as client:
        try:
            response = await client.get(
                f"http://{host}:{port}/logs-test/{marker}", headers={"Host": TEST_HOST}
            )
        except httpx.HTTPError as error:
            raise ApiError(
                502, "test_request_failed", f"the test request failed: {error}"
            ) from None
    return {"marker": marker, "hostname": TEST_HOST, "status": response.status_code}


@logs.delete("")
@requires_token()
async def clear() -> Json:
    """Delete every request log key (admin only)."""
    check_clear(caller())
    return {"deleted": await storage().request_logs.clear()}


def _check_ip(ip: str) -> None:
    try:
        ipaddress.ip_address(ip)
    except ValueError:
        raise ApiError(422, "invalid_ip", f"{ip!r} is not an IP address", field="ip") from None
