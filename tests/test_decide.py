"""The supervisor's decisions, table-driven and without I/O."""

from __future__ import annotations

import pytest

from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.supervisor.decide import (
    Start,
    Stop,
    Update,
    Wanted,
    decide,
    served,
    unserved,
    usable_certificate,
)


def proxy(hostname: str = "a.example.com", **fields: object) -> ProxyTarget:
    return ProxyTarget.model_validate(
        {"hostname": hostname, "target_url": "http://127.0.0.1:3000", **fields}
    )


def certificate(*domains: str, issued: bool = True) -> Certificate:
    return Certificate(
        cert_name="c",
        domains=list(domains),
        status=CertificateStatus.ACTIVE if issued else CertificateStatus.PENDING,
        fullchain_pem="chain" if issued else None,
        private_key_pem="key" if issued else None,
    )


A = Wanted(proxy())
A_CHANGED = Wanted(proxy(target_url="http://127.0.0.1:4000"))
B = Wanted(proxy("b.example.com"))


@pytest.mark.parametrize(
    ("desired", "running", "expected"),
    [
        ({}, {}, []),
        ({"a.example.com": A}, {}, [Start(A)]),
        ({"a.example.com": A}, {"a.example.com": A}, []),
        ({"a.example.com": A_CHANGED}, {"a.example.com": A}, [Update(A_CHANGED)]),
        ({}, {"a.example.com": A}, [Stop("a.example.com")]),
        (
            {"b.example.com": B},
            {"a.example.com": A},
            [Stop("a.example.com"), Start(B)],
        ),
        (
            {"a.example.com": Wanted(proxy(enabled=False))},
            {"a.example.com": A},
            [Stop("a.example.com")],
        ),
    ],
)
def test_decide(
    desired: dict[str, Wanted], running: dict[str, Wanted], expected: list[object]
) -> None:
    assert decide(desired, running) == expected


def test_decide_is_idempotent_and_limited_to_the_named_hostnames() -> None:
    desired = {"a.example.com": A, "b.example.com": B}
    assert decide(desired, {}, {"b.example.com"}) == [Start(B)]
    assert decide(desired, desired) == []


def test_a_new_certificate_is_an_update() -> None:
    with_tls = Wanted(proxy(), certificate("a.example.com"))
    assert decide({"a.example.com": with_tls}, {"a.example.com": A}) == [Update(with_tls)]


@pytest.mark.parametrize(
    ("target", "cert", "usable"),
    [
        (proxy(), certificate("a.example.com"), True),
        (proxy(), certificate("x.example.com", "a.example.com"), True),
        (proxy(), certificate("b.example.com"), False),
        (proxy(), certificate("a.example.com", issued=False), False),
        (proxy(enable_https=False), certificate("a.example.com"), False),
        (proxy(), None, False),
    ],
)
def test_usable_certificate(target: ProxyTarget, cert: Certificate | None, usable: bool) -> None:
    assert (usable_certificate(target, cert) is not None) is usable


@pytest.mark.parametrize(
    ("wanted", "expected"),
    [
        (Wanted(proxy()), True),
        (Wanted(proxy(enable_http=False)), False),
        (Wanted(proxy(enable_http=False), certificate("a.example.com")), True),
        (Wanted(proxy(enabled=False), certificate("a.example.com")), False),
    ],
)
def test_served(wanted: Wanted, expected: bool) -> None:
    assert served(wanted) is expected


@pytest.mark.parametrize(
    ("wanted", "error"),
    [
        (Wanted(proxy()), None),
        (Wanted(proxy(enable_http=False), certificate("a.example.com")), None),
        (Wanted(proxy(enable_http=False)), "http_disabled"),
        (Wanted(proxy(enabled=False)), "proxy_disabled"),
        (Wanted(proxy(enabled=False, enable_http=False)), "proxy_disabled"),
    ],
)
def test_unserved_says_why_a_proxy_has_no_instance(wanted: Wanted, error: str | None) -> None:
    reason = unserved(wanted)
    assert (reason.error if reason is not None else None) == error
    assert reason is None or "'a.example.com'" in reason.detail
