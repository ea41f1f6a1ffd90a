"""Who counts as a client on this machine for the API hostnames on the public ports. Pure."""

from __future__ import annotations

import pytest

from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.loopback import from_loopback, nobody


@pytest.mark.parametrize(
    ("ip", "expected"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("203.0.113.7", False),
        ("10.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("", False),
    ],
)
def test_the_client_must_be_loopback(ip: str, expected: bool) -> None:
    assert from_loopback(Client(ip=ip, trusted=False), []) is expected
    assert from_loopback(Client(ip=ip, trusted=True), []) is expected


NAMING_ANOTHER = [
    [(b"x-forwarded-for", b"203.0.113.7")],
    [(b"x-forwarded-for", b"127.0.0.1, 203.0.113.7")],
    [(b"x-forwarded-for", b"unknown")],
    [(b"x-real-ip", b"198.51.100.1")],
    [(b"forwarded", b"for=127.0.0.1")],
]


@pytest.mark.parametrize("headers", NAMING_ANOTHER)
def test_a_trusted_local_proxy_forwarding_for_someone_else_is_refused(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert not from_loopback(Client(ip="127.0.0.1", trusted=True), headers)


@pytest.mark.parametrize("headers", NAMING_ANOTHER)
def test_an_untrusted_peer_s_forwarding_headers_change_nothing(
    headers: list[tuple[bytes, bytes]],
) -> None:
    assert from_loopback(Client(ip="127.0.0.1", trusted=False), headers)
    assert not from_loopback(Client(ip="203.0.113.7", trusted=False), headers)


def test_a_trusted_local_proxy_forwarding_for_local_clients_is_served() -> None:
    headers = [(b"x-forwarded-for", b"127.0.0.1, ::1"), (b"x-real-ip", b"127.0.0.1")]
    assert from_loopback(Client(ip="127.0.0.1", trusted=True), headers)


def test_nobody_when_turned_off() -> None:
    assert not nobody(Client(ip="127.0.0.1", trusted=False), [])
