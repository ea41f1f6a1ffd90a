"""Open connections per client: the count itself. Pure."""

from __future__ import annotations

import pytest

from oauthproxy.proxy.limits import ConnectionLimit, client_key


@pytest.mark.parametrize(
    ("ip", "key"),
    [
        ("203.0.113.7", "203.0.113.7"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.7", "203.0.113.7"),
        ("not an address", "not an address"),
    ],
)
def test_client_key(ip: str, key: str) -> None:
    assert client_key(ip) == key


def test_a_share_is_held_until_released() -> None:
    limit = ConnectionLimit(2)
    first, second = limit.admit("203.0.113.7"), limit.admit("203.0.113.7")
    assert first is not None and second is not None
    assert limit.admit("203.0.113.7") is None
    assert limit.admit("2001:db8::1") is not None  # another client's share is its own
    first()
    third = limit.admit("203.0.113.7")
    assert third is not None
    assert limit.admit("203.0.113.7") is None


def test_an_ipv6_client_counts_by_its_64() -> None:
    limit = ConnectionLimit(1)
    assert limit.admit("2001:db8::1") is not None
    assert limit.admit("2001:db8::2") is None
    assert limit.admit("2001:db8:0:1::1") is not None


def test_zero_counts_nothing() -> None:
    limit = ConnectionLimit(0)
    assert all(limit.admit("203.0.113.7") is not None for _ in range(1000))
