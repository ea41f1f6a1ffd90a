"""Targets: an owner token never reaches the gateway's own listeners or a denied network."""

from __future__ import annotations

import ipaddress

import pytest

from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.targets import (
    DEFAULT_DENIED_NETWORKS,
    Destination,
    ResolvedAddress,
    TargetPolicy,
    check_destination,
    literal_address,
    parse_networks,
    port_destination,
    url_destination,
)

OWNER = Caller(token_hash="sha256:" + "a" * 64, is_admin=False)
ADMIN = Caller(token_hash="sha256:" + "0" * 64, is_admin=True)
POLICY = TargetPolicy(
    denied_networks=parse_networks(DEFAULT_DENIED_NETWORKS),
    gateway_ports=frozenset({9000, 80, 443, 10001}),
)
PUBLIC = "203.0.113.7"
"""An address of this host's in the table (`local`), as if on one of its interfaces."""


def _at(address: str, *, local: bool = False) -> ResolvedAddress:
    return ResolvedAddress(ipaddress.ip_address(address), is_local=local)


@pytest.mark.parametrize(
    ("port", "address", "local", "refused"),
    [
        (9000, "127.0.0.1", False, True),
        (9000, "127.1.2.3", False, True),
        (9000, "::1", False, True),
        (9000, "0.0.0.0", False, True),
        (9000, "::", False, True),
        (9000, "::ffff:127.0.0.1", False, True),
        (80, PUBLIC, True, True),
        (10001, PUBLIC, True, True),
        (80, PUBLIC, False, False),
        (3000, "127.0.0.1", False, False),
        (8080, PUBLIC, True, False),
        (80, "169.254.169.254", False, True),
        (8080, "169.254.1.1", False, True),
        (80, "::ffff:169.254.169.254", False, True),
        (80, "fe80::1", False, True),
        (80, "10.0.0.5", False, False),
    ],
)
def test_owner_targets(port: int, address: str, local: bool, refused: bool) -> None:
    destination = Destination(field="target_url", host=address, port=port)
    resolved = [_at(address, local=local)]
    if not refused:
        check_destination(OWNER, POLICY, destination, resolved)
        return
    with pytest.raises(Refused) as caught:
        check_destination(OWNER, POLICY, destination, resolved)
    assert (caught.value.status, caught.value.error) == (403, "target_not_allowed")
    assert caught.value.field == "target_url"
    assert caught.value.detail.startswith(f"target_url: {address}:{port} may not be targeted")


def test_one_bad_address_among_several_refuses_the_name() -> None:
    destination = Destination(field="target_url", host="mixed.example", port=80)
    with pytest.raises(Refused):
        check_destination(OWNER, POLICY, destination, [_at("10.0.0.1"), _at("169.254.169.254")])


def test_the_admin_may_target_anything() -> None:
    for address, port in (("127.0.0.1", 9000), ("169.254.169.254", 80)):
        destination = Destination(field="target_url", host=address, port=port)
        check_destination(ADMIN, POLICY, destination, [_at(address)])


def test_a_name_that_does_not_resolve_passes() -> None:
    check_destination(OWNER, POLICY, Destination("target_url", "nowhere.invalid", 9000), [])


def test_the_admin_setting_widens_and_narrows() -> None:
    wide = TargetPolicy(denied_networks=(), gateway_ports=POLICY.gateway_ports)
    metadata = Destination(field="target_url", host="169.254.169.254", port=80)
    check_destination(OWNER, wide, metadata, [_at("169.254.169.254")])
    with pytest.raises(Refused):
        check_destination(OWNER, wide, Destination("f", "127.0.0.1", 9000), [_at("127.0.0.1")])
    narrow = TargetPolicy(
        denied_networks=parse_networks(["10.0.0.0/8"]), gateway_ports=POLICY.gateway_ports
    )
    with pytest.raises(Refused) as caught:
        check_destination(OWNER, narrow, Destination("f", "10.1.2.3", 80), [_at("10.1.2.3")])
    assert "10.0.0.0/8" in caught.value.detail


@pytest.mark.parametrize(
    ("url", "host", "port"),
    [
        ("http://backend:3000/x", "backend", 3000),
        ("http://backend", "backend", 80),
        ("https://backend", "backend", 443),
        ("http://[::1]:9000/", "::1", 9000),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254", 80),
    ],
)
def test_url_destination(url: str, host: str, port: int) -> None:
    assert url_destination("target_url", url) == Destination("target_url", host, port)


def test_a_port_target_is_loopback() -> None:
    assert port_destination("target_value", "9000") == Destination(
        "target_value", "127.0.0.1", 9000
    )


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("[::1]", "::1"),
        ("fe80::1%eth0", "fe80::1"),
        ("backend", None),
        ("2852039166", None),  # the resolver reads it as 169.254.169.254; the shell resolves it
    ],
)
def test_literal_address(host: str, expected: str | None) -> None:
    found = literal_address(host)
    assert (None if found is None else str(found)) == expected


def test_parse_networks_names_the_bad_entry() -> None:
    with pytest.raises(ValueError, match="'nonsense' is not an IP address or network"):
        parse_networks(["10.0.0.0/8", "nonsense"])
