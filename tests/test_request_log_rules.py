"""The request log's pure parts, row by row: redaction, fields, key naming, the write plan,
query parsing, index choice, matching, percentiles and owner scoping; and the flush loop on
trio's autojump clock."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
import trio
import trio.testing

from oauthproxy.logs import schema
from oauthproxy.logs.logger import (
    BATCH_ENTRIES,
    BATCH_SECONDS,
    FLUSH_SECONDS,
    RequestLogger,
    serve_request_logger,
)
from oauthproxy.logs.queries import (
    LogFilter,
    level_of,
    matches,
    parse_query,
    percentiles,
    plan_indexes,
)
from oauthproxy.logs.records import RequestEntry, fields_of, redact_target
from oauthproxy.logs.records import event as event_entry
from oauthproxy.metrics import GatewayMetrics
from oauthproxy.settings import Settings
from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.logs import check_clear, readable_hosts


def entry(**changes: object) -> RequestEntry:
    made = RequestEntry(
        started=1_700_000_000.25,
        clock=0.0,
        client_ip="203.0.113.7",
        scheme=b"https",
        host="api.example.com",
        method=b"GET",
        target=b"/items?id=3",
        status=200,
        upstream="http://127.0.0.1:3000",
        duration=0.0125,
    )
    for name, value in changes.items():
        setattr(made, name, value)
    return made


@pytest.mark.parametrize(
    ("target", "written"),
    [
        ("/plain", "/plain"),
        ("/a?x=1&y=2", "/a?x=1&y=2"),
        ("/cb?code=abc&state=xyz", "/cb?code=REDACTED&state=REDACTED"),
        ("/x?access_token=t&refresh_token=r", "/x?access_token=REDACTED&refresh_token=REDACTED"),
        ("/x?client_secret=s&client_id=c", "/x?client_secret=REDACTED&client_id=c"),
        ("/x?API_KEY=k&Password=p", "/x?API_KEY=REDACTED&Password=REDACTED"),
        ("/x?X-Amz-Signature=s", "/x?X-Amz-Signature=REDACTED"),
        ("/x?code_verifier=v&nonce=n", "/x?code_verifier=REDACTED&nonce=REDACTED"),
        ("/consent?request=r", "/consent?request=REDACTED"),
        ("/x?flag&token", "/x?flag&token"),  # no value, nothing to hide
        # the backend decodes the name: so does the log (it kept `access_t%6Fken=<token>`)
        ("/x?access_t%6Fken=t&a=1", "/x?access_t%6Fken=REDACTED&a=1"),
        ("/x?client%5Fsecret=s", "/x?client%5Fsecret=REDACTED"),
        ("/x?a=1;token=t", "/x?a=1;token=REDACTED"),  # `;` separates pairs for some servers
        ("/x?", "/x?"),
        # a session in a path parameter (Tomcat's and Jetty's URL rewriting), query or not
        ("/cart;jsessionid=ABC?session=S", "/cart;jsessionid=REDACTED?session=REDACTED"),
        ("/a;jsessionid=ABC/b;v=2", "/a;jsessionid=REDACTED/b;v=2"),
        ("/a;x=1;token=t", "/a;x=1;token=REDACTED"),
        ("/a;flag/b", "/a;flag/b"),
    ],
)
def test_redaction(target: str, written: str) -> None:
    assert redact_target(target) == written


def test_fields_are_strings_and_redacted() -> None:
    fields = fields_of(entry(target=b"/cb?code=secret", user="alice", client_id="c1"))
    assert fields["request_path"] == "/cb?code=REDACTED"
    assert fields["duration_ms"] == "12.500"
    assert fields["timestamp"] == "1700000000.250000"
    assert (fields["user"], fields["client_id"], fields["scheme"]) == ("alice", "c1", "https")
    assert all(isinstance(value, str) for value in fields.values())


@pytest.mark.parametrize(
    ("name", "key"),
    [
        (schema.ip_index("10.0.0.1"), "idx:req:ip:10.0.0.1"),
        (schema.host_index("a.example.com"), "idx:req:host:a.example.com"),
        (schema.user_index("alice"), "idx:req:user:alice"),
        (schema.client_index("c1"), "idx:req:client:c1"),
        (schema.status_index(404), "idx:req:status:404"),
        (schema.requests_count("20231114:22"), "stats:requests:20231114:22"),
        (schema.errors_count("20231114:22"), "stats:errors:20231114:22"),
        (schema.unique_ips("a", "20231114:22"), "stats:unique_ips:a:20231114:22"),
        (schema.entry_key("1.5", 7, "::1"), "req:1.5-7:::1"),
    ],
)
def test_key_names(name: str, key: str) -> None:
    assert name == key
    assert key.startswith(schema.PREFIXES)  # so logs-clear deletes it


def test_hours_are_utc() -> None:
    assert schema.hour_of(1_700_000_000) == "20231114:22"


def test_write_plan_indexes_and_counts() -> None:
    rows = [
        entry(),
        entry(status=502, reason="bad_gateway", user="bob", client_id="c9", duration=2.0),
        entry(client_ip="198.51.100.1", target=b"/items?token=t"),
        entry(status=404),
    ]
    plan = schema.plan(rows, first_sequence=10, slow_seconds=1.0)
    assert plan.key(1) == "req:1700000000.250000-10:203.0.113.7"
    assert plan.key(3) == "req:1700000000.250000-12:198.51.100.1"
    assert plan.indexed == {
        schema.ALL: [1, 2, 3, 4],
        "idx:req:ip:203.0.113.7": [1, 2, 4],
        "idx:req:ip:198.51.100.1": [3],
        "idx:req:host:api.example.com": [1, 2, 3, 4],
        schema.ERRORS: [2, 4],
        schema.SLOW: [2],
        "idx:req:user:bob": [2],
        "idx:req:client:c9": [2],
        "idx:req:status:502": [2],
        "idx:req:status:404": [4],
    }  # a 2xx status and the path are found by filtering: no index of their own
    assert len(plan.groups) == 4  # entry 1 and 4 differ in status only, yet form two groups
    assert plan.counters == {"stats:requests:20231114:22": 4, "stats:errors:20231114:22": 2}
    assert plan.visitors == {"stats:unique_ips:api.example.com:20231114:22": [1, 2, 3, 4]}
    again = schema.plan([entry(), entry(), entry(client_ip="198.51.100.1")], first_sequence=0,
                        slow_seconds=1)  # fmt: skip
    assert again.visitors == {"stats:unique_ips:api.example.com:20231114:22": [1, 3]}
    assert plan.durations == {"stats:durations:api.example.com": [1, 2, 3, 4]}
    assert schema.unpacked(plan.packed[2])["request_path"] == "/items?token=REDACTED"
    assert (plan.scores[1], plan.durations_ms[1]) == ("1700000000.250000", "2000.000")


def test_sequence_numbers_wrap() -> None:
    plan = schema.plan([entry(), entry()], first_sequence=schema.SEQUENCES - 1, slow_seconds=1)
    assert plan.key(2) == "req:1700000000.250000-0:203.0.113.7"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", LogFilter()),
        ("status:500", LogFilter(status=500)),
        ("host:API.example.com ip:1.2.3.4", LogFilter(hostname="api.example.com", ip="1.2.3.4")),
        ("user:alice client:c1", LogFilter(user="alice", client_id="c1")),
        ("method:post path:/api", LogFilter(method="POST", path="/api")),
        ("level:error event:websocket", LogFilter(level="ERROR", event="websocket")),
        ("errors slow", LogFilter(errors=True, slow=True)),
        ("timeout status:abc", LogFilter(words=("timeout", "status:abc"))),
    ],
)
def test_parse_query(query: str, expected: LogFilter) -> None:
    assert parse_query(query, LogFilter()) == expected


@pytest.mark.parametrize(
    ("query", "indexes"),
    [
        (LogFilter(), ["idx:req:all"]),
        (LogFilter(ip="1.2.3.4", hostname="a"), ["idx:req:ip:1.2.3.4"]),
        (LogFilter(client_id="c", user="u"), ["idx:req:client:c"]),
        (LogFilter(user="u", status=500), ["idx:req:user:u"]),
        (LogFilter(path="/x", method="GET", hostname="a"), ["idx:req:host:a"]),
        (LogFilter(path="/x", method="GET"), ["idx:req:all"]),
        (LogFilter(status=200), ["idx:req:all"]),
        (LogFilter(status=302), ["idx:req:status:302"]),
        (LogFilter(path="/x", hostname="a"), ["idx:req:host:a"]),
        (LogFilter(status=404, errors=True), ["idx:req:status:404"]),
        (LogFilter(errors=True), ["idx:req:errors"]),
        (LogFilter(slow=True), ["idx:req:slow"]),
        (LogFilter(hosts={"b": 0.0, "a": 0.0}), ["idx:req:host:a", "idx:req:host:b"]),
        # an owner never reads a shared index (IP, client, user): other owners' traffic there
        # would take the SCAN_LIMIT newest keys and hide the owner's own entries
        (LogFilter(hosts={"a": 0.0}, hostname="a", ip="1.2.3.4"), ["idx:req:host:a"]),
        (LogFilter(hosts={"a": 0.0}, hostname="a", user="u"), ["idx:req:host:a"]),
        (
            LogFilter(hosts={"a": 0.0, "b": 0.0}, client_id="c"),
            ["idx:req:host:a", "idx:req:host:b"],
        ),
        (LogFilter(hosts={"a": 0.0}, hostname="z"), []),  # not its hostname: nothing to read
        (LogFilter(hosts={}), []),
    ],
)
def test_index_choice(query: LogFilter, indexes: list[str]) -> None:
    assert plan_indexes(query) == indexes


STORED = fields_of(entry(status=503, user="alice", client_id="c1", target=b"/api/x?q=1"))


@pytest.mark.parametrize(
    ("query", "passes"),
    [
        (LogFilter(), True),
        (LogFilter(hosts={"api.example.com": 0.0}), True),
        (LogFilter(hosts={"other.example.com": 0.0}), False),
        (LogFilter(hosts={"other.example.com": 0.0}, hostname="api.example.com"), False),
        (LogFilter(hosts={"api.example.com": float(STORED["timestamp"])}), True),
        (LogFilter(hosts={"api.example.com": float(STORED["timestamp"]) + 1}), False),  # before
        (LogFilter(ip="203.0.113.7"), True),
        (LogFilter(ip="203.0.113.8"), False),
        (LogFilter(status=503, errors=True, level="ERROR"), True),
        (LogFilter(status=200), False),
        (LogFilter(path="/api"), True),
        (LogFilter(path="/apx"), False),
        (LogFilter(user="alice", client_id="c1", method="GET"), True),
        (LogFilter(user="bob"), False),
        (LogFilter(event="request"), True),
        (LogFilter(event="websocket"), False),
        (LogFilter(words=("api", "alice")), True),
        (LogFilter(words=("nowhere",)), False),
    ],
)
def test_matching_requests(query: LogFilter, passes: bool) -> None:
    assert matches(STORED, query) is passes


@pytest.mark.parametrize(
    ("status", "level"), [(200, "INFO"), (302, "INFO"), (404, "WARNING"), (502, "ERROR")]
)
def test_levels(status: int, level: str) -> None:
    assert level_of(status) == level


def test_percentiles_nearest_rank() -> None:
    assert percentiles([]) == {}
    assert percentiles([5.0]) == {"p50": 5.0, "p90": 5.0, "p99": 5.0}
    values = [float(n) for n in range(1, 101)]
    assert percentiles(values) == {"p50": 50.0, "p90": 90.0, "p99": 99.0}


MADE = datetime(2026, 12, 3, 22, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Proxy:
    hostname: str
    owner_token_hash: str | None
    created_at: datetime = MADE


def test_owners_read_only_their_hostnames_since_they_made_them_and_only_the_admin_clears() -> None:
    proxies = [Proxy("a.example.com", "ann"), Proxy("b.example.com", "bob"), Proxy("c", None)]
    admin, ann = Caller("root", is_admin=True), Caller("ann", is_admin=False)
    assert readable_hosts(admin, proxies) is None
    assert readable_hosts(ann, proxies) == {"a.example.com": MADE.timestamp()}
    assert readable_hosts(Caller("nobody", is_admin=False), proxies) == {}
    check_clear(admin)
    with pytest.raises(Refused):
        check_clear(ann)


def test_a_full_buffer_drops_and_counts() -> None:
    logger = RequestLogger(capacity=2)
    for _ in range(5):
        logger.record(entry())
    assert (logger.buffered, logger.dropped) == (2, 3)
    assert len(logger.take()) == 2
    assert logger.buffered == 0


async def test_flush_loop_takes_full_or_old_batches_and_the_rest_on_stop(
    autojump_clock: trio.testing.MockClock, capsys: pytest.CaptureFixture[str]
) -> None:
    """The buffer is taken once it holds BATCH_ENTRIES (at the next look, within
    FLUSH_SECONDS), else BATCH_SECONDS after the previous batch (a logger that writes nowhere:
    its flushes only take the buffer, so the clock moves only with the test); with access
    lines, what is left when `stop` is set is written before the task returns."""
    logger = RequestLogger(capacity=2 * BATCH_ENTRIES, to_redis=False)
    settings = Settings(_env_file=None)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_request_logger, logger, None, settings, stop)
        logger.record(entry(target=b"/first"))
        await trio.sleep(BATCH_SECONDS - FLUSH_SECONDS / 2)
        assert logger.buffered == 1  # a few entries wait for more
        await trio.sleep(FLUSH_SECONDS)
        assert logger.buffered == 0  # ... until the batch is BATCH_SECONDS old
        for _number in range(BATCH_ENTRIES):
            logger.record(entry(target=b"/many"))
        await trio.sleep(FLUSH_SECONDS * 1.5)
        assert logger.buffered == 0  # a full batch goes at the next look
        stop.set()
    logger = RequestLogger(capacity=10, to_redis=False, access_log=True)
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_request_logger, logger, None, settings, stop)
        logger.record(entry(target=b"/last?code=c"))
        stop.set()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["request_path"] for line in lines] == ["/last?code=REDACTED"]


EVENT = fields_of(event_entry("proxy.served", host="api.example.com", detail="running_http"))


@pytest.mark.parametrize(
    ("query", "passes"),
    [
        (LogFilter(), True),
        (LogFilter(event="proxy.served", hostname="api.example.com"), True),
        (LogFilter(event="request"), False),
        (LogFilter(status=200), False),  # request-only filters leave events out
        (LogFilter(path="/"), False),
        (LogFilter(level="INFO"), True),
        (LogFilter(hosts={"api.example.com": 0.0}), True),
    ],
)
def test_matching_events(query: LogFilter, passes: bool) -> None:
    assert matches(EVENT, query) is passes


def test_events_are_indexed_by_name_and_count_in_no_statistics() -> None:
    rows = [event_entry("oauth.token_refused", status=400, client_id="c1", detail="bad")]
    plan = schema.plan(rows, first_sequence=0, slow_seconds=1)
    assert set(plan.indexed) == {
        schema.ALL, "idx:req:event:oauth.token_refused", "idx:req:client:c1", schema.ERRORS
    }  # fmt: skip
    assert (plan.counters, plan.visitors, plan.durations) == ({}, {}, {})


def test_packed_entries_read_back_and_hold_no_separator() -> None:
    packed = schema.pack(entry(user="a\x1fb", reason="c\x1ed"), "12.500")
    assert schema.ENTRIES not in packed
    read = schema.unpacked(packed)
    assert read["user"] == "a\ufffdb" and read["gateway_reason"] == "c\ufffdd"
    assert read["request_path"] == "/items?id=3" and read["status"] == "200"
    assert "client_id" not in read  # empty values are left out
    assert schema.unpacked("3\x1fother") == {}  # a form this version does not read
    full = entry(user="u", client_id="c", route_id="r", tls_version="TLSv1.3", reason="x",
                 bytes_in=5, bytes_out=7, kind="sse", version=b"2")  # fmt: skip
    fields = fields_of(full)  # the access log's and the API's fields, in `FIELDS` order
    assert schema.unpacked(schema.pack(full, fields["duration_ms"])) == {
        name: value for name, value in fields.items() if name not in ("timestamp", "client_ip")
    }
    assert fields["protocol"] == "HTTP/2"


def test_entries_packed_before_the_protocol_still_read() -> None:
    """A value packed by the version before the protocol field (form 1) reads as it did."""
    earlier = "1\x1fhttps\x1fapi.example.com\x1fGET\x1f/\x1f200\x1f1\x1f2\x1f3.000\x1f\x1f\x1f\x1f"
    read = schema.unpacked(earlier + "\x1f\x1f\x1fhttp")
    assert read == {"scheme": "https", "hostname": "api.example.com", "method": "GET",
                    "request_path": "/", "status": "200", "bytes_in": "1", "bytes_out": "2",
                    "duration_ms": "3.000", "kind": "http"}  # fmt: skip
    assert schema.unpacked(schema.pack(entry(version=b"1.1"), "1.000"))["protocol"] == "HTTP/1.1"


@pytest.mark.parametrize(
    ("query", "protocol"),
    [("protocol:HTTP/2", "HTTP/2"), ("protocol:h2", "HTTP/2"), ("protocol:http/1.1", "HTTP/1.1"),
     ("protocol:1.0", "HTTP/1.0"), ("protocol:2.0", "HTTP/2")],
)  # fmt: skip
def test_protocol_terms(query: str, protocol: str) -> None:
    found = parse_query(query, LogFilter())
    assert found.protocol == protocol
    assert matches({"protocol": protocol, "kind": "http"}, found)
    other = "HTTP/1.1" if protocol == "HTTP/2" else "HTTP/2"
    assert not matches({"protocol": other, "kind": "http"}, found)
    assert parse_query("protocol:spdy", LogFilter()).words == ("protocol:spdy",)


def test_entries_go_in_runs_of_one_bucket_each() -> None:
    rows = [entry(started=1_700_000_009.5), entry(started=1_700_000_010.1),
            entry(started=1_700_000_009.9), entry(started=1_700_000_019.0)]  # fmt: skip
    plan = schema.plan(rows, first_sequence=0, slow_seconds=1)
    assert plan.runs == [("req:1700000000", 1, 1), ("req:1700000010", 2, 2),
                         ("req:1700000000", 3, 3), ("req:1700000010", 4, 4)]  # fmt: skip
    assert plan.buckets == {"req:1700000000": 1_700_000_000, "req:1700000010": 1_700_000_010}
    assert schema.bucket_of(plan.key(3)) == "req:1700000000"
    edge = schema.plan([entry(started=1_700_000_009.9999996)], first_sequence=0, slow_seconds=1)
    assert edge.key(1).startswith("req:1700000010.000000-")  # rounded to the microsecond
    assert edge.runs == [(schema.bucket_of(edge.key(1)), 1, 1)]  # where readers look for it


@pytest.mark.parametrize(
    ("to_redis", "access_log", "shows"),
    [(True, False, True), (False, True, True), (False, False, False)],
)
def test_the_kind_is_looked_for_only_where_it_is_shown(
    to_redis: bool, access_log: bool, shows: bool
) -> None:
    """With metrics alone (no request log, no access log), forwarding skips the response's
    content-type lookup that tells an SSE stream (`RequestEntry.sniff`)."""
    logger = RequestLogger(
        capacity=1, to_redis=to_redis, access_log=access_log, metrics=GatewayMetrics()
    )
    assert logger.active and logger.shows_kind is shows
