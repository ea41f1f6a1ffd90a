"""The pure routing decisions: which route takes a request, for which proxy, and where it goes."""

from __future__ import annotations

import json
import random
from typing import Any

import pytest
from pydantic import ValidationError

from oauthproxy.linear_regex import MAX_MATCHED_PATH
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route
from oauthproxy.routing import ProxyRoutes, RouteTable, route_target_url


def route(route_id: str, path: str = "/", **fields: Any) -> Route:
    values: dict[str, Any] = {"target_type": "port", "target_value": "3000", **fields}
    return Route(route_id=route_id, path_pattern=path, **values)


def proxy(hostname: str = "b.example.com", **fields: Any) -> ProxyTarget:
    return ProxyTarget(hostname=hostname, target_url="http://backend:3000", **fields)


ROUTES = [
    route("catch-all", "/", priority=0),
    route("api-v1", "/api/v1/", priority=90, methods=["GET", "POST"]),
    route("api", "/api/", priority=80),
    route("numbered", r"^/items/\d+$", is_regex=True, priority=70),
    route("items", "/items/", priority=60),
    route("b-tie", "/tie", priority=40),
    route("a-tie", "/ti", priority=40),
    route("off", "/off/", priority=100, enabled=False),
    route("only-a", "/only-a/", scope="proxy", proxy_hostnames=["a.example.com"]),
]
TABLE = RouteTable.build(ROUTES)
ORDER = ("api-v1", "api", "numbered", "items", "only-a", "a-tie", "b-tie", "catch-all")


def ids(routes: ProxyRoutes) -> tuple[str, ...]:
    return tuple(each.route_id for each in routes.routes)


def test_build_drops_disabled_routes_and_sorts_by_priority_then_id() -> None:
    shuffled = random.Random(7).sample(ROUTES, len(ROUTES))
    assert ids(RouteTable.build(shuffled).for_proxy(proxy("a.example.com"))) == ORDER


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/api/v1/users", "GET", "api-v1"),  # the highest priority that matches
        ("/api/v1/users", "post", "api-v1"),  # methods compare upper-case
        ("/api/v1/users", "DELETE", "api"),  # not one of its methods: the next route
        ("/api/v2/users", "GET", "api"),
        ("/items/42", "GET", "numbered"),  # a regex route
        ("/items/42/photos", "GET", "items"),  # the regex is anchored by its `$`
        ("/shop/items/42", "GET", "catch-all"),  # a regex matches at the start of the path
        ("/tie", "GET", "a-tie"),  # equal priority: by route id
        ("/off/page", "GET", "catch-all"),  # a disabled route is not in the table
        ("/only-a/page", "GET", "catch-all"),  # a route of another proxy does not apply
        ("relative", "GET", None),  # nothing matches
    ],
)
def test_match(path: str, method: str, expected: str | None) -> None:
    matched = TABLE.for_proxy(proxy()).match(path, method)
    assert (matched.route_id if matched else None) == expected


def without(*excluded: str) -> tuple[str, ...]:
    return tuple(route_id for route_id in ORDER if route_id not in excluded)


def settings(mode: str = "all", enabled: str = "", disabled: str = "") -> dict[str, Any]:
    """A proxy's route settings; `enabled` and `disabled` are comma-separated route ids."""
    return {
        "route_mode": mode,
        "enabled_routes": enabled.split(",") if enabled else [],
        "disabled_routes": disabled.split(",") if disabled else [],
    }


@pytest.mark.parametrize(
    ("hostname", "route_settings", "expected"),
    [
        ("a.example.com", settings(), ORDER),
        ("b.example.com", settings(), without("only-a")),
        ("a.example.com", settings(disabled="api,only-a"), without("api", "only-a")),
        ("a.example.com", settings("none"), ()),
        ("b.example.com", settings("none", enabled="api"), ()),
        ("a.example.com", settings("selective"), ()),
        ("a.example.com", settings("selective", "catch-all,only-a"), ("only-a", "catch-all")),
        ("b.example.com", settings("selective", "catch-all,only-a"), ("catch-all",)),
        ("b.example.com", settings("selective", "api", disabled="api"), ()),
        ("b.example.com", settings("selective", "off,missing"), ()),
    ],
)
def test_routes_for_proxy(
    hostname: str, route_settings: dict[str, Any], expected: tuple[str, ...]
) -> None:
    assert ids(TABLE.for_proxy(proxy(hostname, **route_settings))) == expected


def test_only_the_route_settings_of_a_proxy_matter() -> None:
    plain = TABLE.for_proxy(proxy())
    assert TABLE.for_proxy(proxy(custom_headers={"X-A": "1"}, enable_http=False)) == plain
    assert TABLE.for_proxy(proxy(disabled_routes=["api"])) != plain


def test_a_catastrophic_regex_runs_in_linear_time() -> None:
    """`(a+)+$` backtracks exponentially in Python's `re`; on RE2 this returns at once."""
    table = RouteTable.build([route("evil", r"^/(a+)+$", is_regex=True)])
    routes = table.for_proxy(proxy())
    assert routes.match("/" + "a" * 1000 + "!", "GET") is None
    matched = routes.match("/" + "a" * 1000, "GET")
    assert matched is not None and matched.route_id == "evil"


def test_a_regex_matches_no_path_longer_than_a_kib() -> None:
    """Matching is linear in the path times the pattern's size, and some patterns fall back to
    RE2's slow matcher; a path over MAX_MATCHED_PATH (1 KiB) matches no regex route."""
    table = RouteTable.build([route("any", r"^/", is_regex=True)])
    routes = table.for_proxy(proxy())
    longest = "/" + "a" * (MAX_MATCHED_PATH - 1)
    assert routes.match(longest, "GET") is not None
    assert routes.match(longest + "a", "GET") is None


@pytest.mark.parametrize(
    "pattern",
    [r"^/api/(?!admin)", r"^/(?<=x)a", r"^/(a)\1", r"^/(?P<x>a)(?P=x)", r"^/api/(v1"],
)
def test_a_pattern_re2_does_not_support_is_refused_naming_the_field(pattern: str) -> None:
    with pytest.raises(ValidationError) as refused:
        route("unsupported", pattern, is_regex=True)
    [error] = refused.value.errors()
    assert error["loc"] == ("path_pattern",)
    assert "RE2" in error["msg"]


def test_a_stored_route_from_before_re2_still_loads_and_matches_nothing() -> None:
    stored = route("legacy", "/", priority=0).model_dump() | {
        "route_id": "legacy",
        "is_regex": True,
        "path_pattern": r"^/api/(?!admin)",
    }
    legacy = Route.model_validate_json(json.dumps(stored, default=str))
    with pytest.raises(ValidationError):
        Route.model_validate(stored)  # what the API validates: refused
    table = RouteTable.build([legacy, route("fallback", "/", priority=0)])
    matched = table.for_proxy(proxy()).match("/api/users", "GET")
    assert matched is not None and matched.route_id == "fallback"


def test_an_empty_table_matches_nothing() -> None:
    assert RouteTable.build([]).for_proxy(proxy()).match("/", "GET") is None


SERVICES = {"auth": "http://127.0.0.1:9100", "api": "http://127.0.0.1:9000"}
PROXIES = {"api.example.com": proxy("api.example.com")}


@pytest.mark.parametrize(
    ("target_type", "target_value", "expected"),
    [
        ("port", "3000", "http://127.0.0.1:3000"),
        ("service", "auth", "http://127.0.0.1:9100"),
        ("service", "api", "http://127.0.0.1:9000"),
        ("service", "missing", None),
        ("hostname", "api.example.com", "http://backend:3000/"),
        ("hostname", "other.example.com", None),
        ("url", "https://upstream.example.com/base", "https://upstream.example.com/base"),
    ],
)
def test_route_target_url(target_type: str, target_value: str, expected: str | None) -> None:
    target = route("r", target_type=target_type, target_value=target_value)
    assert route_target_url(target, services=SERVICES, proxies=PROXIES) == expected


@pytest.mark.parametrize(
    ("fields", "field", "stored"),
    [
        ({"methods": ["get", "Post", "GET"]}, "methods", ["GET", "POST"]),
        ({"target_value": "03000"}, "target_value", "3000"),
        (
            {"target_type": "hostname", "target_value": "API.Example.com."},
            "target_value",
            "api.example.com",
        ),
        (
            {"scope": "proxy", "proxy_hostnames": ["A.example.com", "a.example.com"]},
            "proxy_hostnames",
            ["a.example.com"],
        ),
    ],
)
def test_route_fields_are_stored_normalised(
    fields: dict[str, Any], field: str, stored: object
) -> None:
    assert getattr(route("r", **fields), field) == stored


def test_a_new_table_keeps_the_compiled_patterns_of_unchanged_routes() -> None:
    """Every route change rebuilt the table and compiled every owner's regexes again, on the
    event loop they share (past RE2's cache of 128 patterns, each time): one owner's updates
    stalled every tenant. A route unchanged since the previous table keeps its compiled form."""
    kept, changed = (
        route("kept", r"^/k/[0-9]+$", is_regex=True),
        route("moved", r"^/m/", is_regex=True),
    )
    first = RouteTable.build([kept, changed])
    moved = changed.model_copy(update={"path_pattern": r"^/n/"})
    second = RouteTable.build([kept, moved], first)
    before = {each.route.route_id: each for each in first.compiled}
    after = {each.route.route_id: each for each in second.compiled}
    assert after["kept"] is before["kept"]
    assert after["moved"] is not before["moved"]
    assert second.for_proxy(proxy()).match("/n/1", "GET") == moved
