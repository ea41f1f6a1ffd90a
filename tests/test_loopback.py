"""Who counts as a client on this machine for the API hostnames on the public ports. Pure."""

from __future__ import annotations

import pytest

from oauthproxy.proxy.headers import Client
from oauthproxy.proxy.loopback import from_loopback, nobody


@pytest.mark.parametrize(
    ("ip", "headers", "expected"),
    [
        ("127.0.0.1", [], True),
        ("127.8.9.10", [], True),
        ("::1", [], True),
        ("::ffff:127.0.0.1", [], True),
        ("203.0.113.7", [], False),
        ("10.0.0.1", [], False),
        ("::ffff:10.0.0.1", [], False),
        ("", [], False),
        ("127.0.0.1", [(b"x-forwarded-for", b"127.0.0.1, ::1")], True),
        ("127.0.0.1", [(b"x-forwarded-for", b"203.0.113.7")], False),
        ("127.0.0.1", [(b"x-forwarded-for", b"127.0.0.1, 203.0.113.7")], False),
        ("127.0.0.1", [(b"x-forwarded-for", b"unknown")], False),
        ("127.0.0.1", [(b"x-real-ip", b"198.51.100.1")], False),
        ("127.0.0.1", [(b"forwarded", b"for=127.0.0.1")], False),
        ("203.0.113.7", [(b"x-forwarded-for", b"127.0.0.1")], False),
    ],
)
def test_from_loopback(ip: str, headers: list[tuple[bytes, bytes]], expected: bool) -> None:
    assert from_loopback(Client(ip=ip, trusted=False), headers) is expected
    assert from_loopback(Client(ip=ip, trusted=True), headers) is expected


def test_nobody_when_turned_off() -> None:
    assert not nobody(Client(ip="127.0.0.1", trusted=False), [])
