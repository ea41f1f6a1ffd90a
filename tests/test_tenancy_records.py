"""Records: an owner token reads and changes only its own; routes name only its own things."""

from __future__ import annotations

from typing import Any

import pytest

from oauthproxy.errors import NotFound
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route
from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.records import (
    Holdings,
    changeable,
    check_new_proxy,
    check_route,
    check_unreferenced,
    readable,
    routes_naming_proxy,
    routes_naming_service,
    visible,
)

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64
OWNER_A = Caller(token_hash=A, is_admin=False)
ADMIN = Caller(token_hash="sha256:" + "0" * 64, is_admin=True)
HOLDINGS_A = Holdings(proxies=frozenset({"a.example.com"}), services=frozenset({"a-svc"}))


def _proxy(hostname: str, owner: str | None) -> ProxyTarget:
    return ProxyTarget(hostname=hostname, target_url="http://127.0.0.1:1", owner_token_hash=owner)


PROXIES = [_proxy("a.example.com", A), _proxy("b.example.com", B), _proxy("old.example.com", None)]


def test_visible_keeps_the_callers_own_and_everything_for_the_admin() -> None:
    assert [p.hostname for p in visible(OWNER_A, PROXIES)] == ["a.example.com"]
    assert visible(ADMIN, PROXIES) == PROXIES


@pytest.mark.parametrize("rule", [readable, changeable])
@pytest.mark.parametrize(
    ("caller", "index", "allowed"),
    [
        (OWNER_A, 0, True),
        (OWNER_A, 1, False),
        (OWNER_A, 2, False),  # a record without an owner is the admin's
        (ADMIN, 1, True),
        (ADMIN, 2, True),
    ],
)
def test_another_owners_record_is_missing(
    rule: Any, caller: Caller, index: int, allowed: bool
) -> None:
    proxy = PROXIES[index]
    if allowed:
        assert rule(caller, proxy, "proxy", proxy.hostname) is proxy
        return
    with pytest.raises(NotFound) as caught:
        rule(caller, proxy, "proxy", proxy.hostname)
    assert str(caught.value) == f"proxy {proxy.hostname!r} not found"


def test_a_missing_record_is_missing_for_everyone() -> None:
    for caller in (OWNER_A, ADMIN):
        with pytest.raises(NotFound):
            readable(caller, None, "route", "nope")


RESERVED = frozenset({"localhost", "auth.example.com"})


@pytest.mark.parametrize("hostname", ["localhost", "auth.example.com"])
def test_the_gateways_own_hostnames_are_the_admins(hostname: str) -> None:
    with pytest.raises(Refused) as caught:
        check_new_proxy(OWNER_A, hostname, RESERVED)
    assert (caught.value.status, caught.value.field) == (403, "hostname")
    check_new_proxy(ADMIN, hostname, RESERVED)
    check_new_proxy(OWNER_A, "app.example.com", RESERVED)


def test_an_api_hostname_is_nobodys_proxy() -> None:
    for caller in (ADMIN, OWNER_A):
        with pytest.raises(Refused) as caught:
            check_new_proxy(caller, "localhost", RESERVED, frozenset({"localhost"}))
        assert (caught.value.status, caught.value.error) == (409, "hostname_reserved")
        assert "API_HOSTNAMES" in caught.value.detail


def _route(**fields: Any) -> Route:
    values: dict[str, Any] = {
        "route_id": "r",
        "path_pattern": "/x/",
        "target_type": "port",
        "target_value": "3000",
        "scope": "proxy",
        "proxy_hostnames": ["a.example.com"],
        **fields,
    }
    return Route(**values)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, None),
        ({"target_type": "hostname", "target_value": "a.example.com"}, None),
        ({"target_type": "service", "target_value": "a-svc"}, None),
        ({"target_type": "url", "target_value": "http://10.0.0.1:8080"}, None),
        ({"scope": "global", "proxy_hostnames": []}, "scope"),
        ({"scope": "global", "proxy_hostnames": ["a.example.com"]}, "scope"),
        ({"proxy_hostnames": ["b.example.com"]}, "proxy_hostnames"),
        ({"proxy_hostnames": ["a.example.com", "b.example.com"]}, "proxy_hostnames"),
        ({"target_type": "hostname", "target_value": "b.example.com"}, "target_value"),
        ({"target_type": "hostname", "target_value": "unclaimed.example.com"}, "target_value"),
        ({"target_type": "service", "target_value": "api"}, "target_value"),
        ({"target_type": "service", "target_value": "b-svc"}, "target_value"),
    ],
)
def test_route_rules_for_an_owner(fields: dict[str, Any], field: str | None) -> None:
    route = _route(**fields)
    if field is None:
        check_route(OWNER_A, route, HOLDINGS_A)
    else:
        with pytest.raises(Refused) as caught:
            check_route(OWNER_A, route, HOLDINGS_A)
        assert (caught.value.status, caught.value.error, caught.value.field) == (
            403,
            "forbidden",
            field,
        )
    check_route(ADMIN, route, Holdings(proxies=frozenset(), services=frozenset()))


ROUTES = [
    _route(route_id="scoped", proxy_hostnames=["a.example.com", "b.example.com"]),
    _route(
        route_id="to-proxy",
        target_type="hostname",
        target_value="c.example.com",
        proxy_hostnames=["z.example.com"],
    ),
    _route(
        route_id="to-service",
        target_type="service",
        target_value="svc",
        proxy_hostnames=["z.example.com"],
    ),
]


@pytest.mark.parametrize(
    ("hostname", "expected"),
    [("a.example.com", ["scoped"]), ("c.example.com", ["to-proxy"]), ("d.example.com", [])],
)
def test_routes_naming_a_proxy(hostname: str, expected: list[str]) -> None:
    assert routes_naming_proxy(ROUTES, hostname) == expected


def test_routes_naming_a_service() -> None:
    assert routes_naming_service(ROUTES, "svc") == ["to-service"]
    assert routes_naming_service(ROUTES, "c.example.com") == []


def test_a_named_record_is_in_use() -> None:
    check_unreferenced("proxy", "a.example.com", "hostname", [])
    with pytest.raises(Refused) as caught:
        check_unreferenced("proxy", "a.example.com", "hostname", ["r1", "r2"])
    assert (caught.value.status, caught.value.error, caught.value.field) == (
        409,
        "in_use",
        "hostname",
    )
    assert "r1, r2" in caught.value.detail
