"""The certificate rules of the tenant model, row by row, without I/O."""

from __future__ import annotations

import pytest

from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.supervisor.certificates import CertificateIndex
from oauthproxy.supervisor.decide import usable_certificate
from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.certificates import (
    NameClaims,
    check_attach,
    check_create,
    check_visible,
    links,
    may_take_domain,
    name_claims,
    serves,
    visible,
)

ALICE = "sha256:" + "a" * 64
BOB = "sha256:" + "b" * 64
ADMIN = "sha256:" + "f" * 64

alice = Caller(token_hash=ALICE, is_admin=False, name="alice")
bob = Caller(token_hash=BOB, is_admin=False, name="bob")
admin = Caller(token_hash=ADMIN, is_admin=True, name="admin")

HOST = "app.example.com"


NAMES = {ALICE: "alice", BOB: "bob", ADMIN: "admin"}


def certificate(
    owner: str | None, *domains: str, name: str = "c", issued: bool = True, by: str = ""
) -> Certificate:
    return Certificate(
        cert_name=name,
        domains=list(domains or (HOST,)),
        owner_token_hash=owner,
        created_by=by or NAMES.get(owner or ""),
        fullchain_pem="chain" if issued else None,
        private_key_pem="key" if issued else None,
    )


def proxy(
    owner: str | None, hostname: str = HOST, cert_name: str | None = None, by: str = ""
) -> ProxyTarget:
    return ProxyTarget(
        hostname=hostname,
        target_url="http://127.0.0.1:3000",
        owner_token_hash=owner,
        created_by=by or NAMES.get(owner or ""),
        cert_name=cert_name,
    )


def unclaimed(name: str = HOST) -> NameClaims:
    return NameClaims(name=name)


def proxy_of(owner: str | None, name: str = HOST) -> NameClaims:
    return NameClaims(name=name, has_proxy=True, proxy_owner=owner)


def certificates_of(*owners: str | None, name: str = HOST) -> NameClaims:
    return NameClaims(name=name, certificate_owners=frozenset(owners))


@pytest.mark.parametrize(
    ("who", "claims", "refused"),
    [
        (alice, [unclaimed()], None),
        (alice, [proxy_of(ALICE)], None),
        (alice, [certificates_of(ALICE)], None),
        (alice, [proxy_of(BOB)], "another owner's proxy"),
        (alice, [proxy_of(None)], "another owner's proxy"),
        (alice, [certificates_of(BOB)], "another owner's certificate"),
        (alice, [certificates_of(ALICE, None)], "another owner's certificate"),
        # her own proxy makes the name hers, whoever else holds a certificate for it
        (alice, [NameClaims(HOST, True, ALICE, frozenset({BOB}))], None),
        # one name of several held by another is enough to refuse
        (alice, [unclaimed("free.example.com"), proxy_of(BOB)], "another owner's proxy"),
        (admin, [proxy_of(BOB), certificates_of(ALICE)], None),
    ],
)
def test_who_may_create_a_certificate_for_which_names(
    who: Caller, claims: list[NameClaims], refused: str | None
) -> None:
    if refused is None:
        check_create(who, claims, owned=0, quota=50)
        return
    with pytest.raises(Refused) as raised:
        check_create(who, claims, owned=0, quota=50)
    assert (raised.value.status, raised.value.error, raised.value.field) == (
        403,
        "forbidden",
        "domains",
    )
    assert refused in raised.value.detail
    assert claims[-1].name in raised.value.detail


@pytest.mark.parametrize(
    ("who", "owned", "quota", "allowed"),
    [
        (alice, 0, 50, True),
        (alice, 49, 50, True),
        (alice, 50, 50, False),
        (alice, 3, 0, False),
        (admin, 500, 50, True),
    ],
)
def test_the_certificate_quota(who: Caller, owned: int, quota: int, allowed: bool) -> None:
    if allowed:
        check_create(who, [unclaimed()], owned=owned, quota=quota)
        return
    with pytest.raises(Refused) as raised:
        check_create(who, [unclaimed()], owned=owned, quota=quota)
    assert (raised.value.status, raised.value.error) == (403, "quota_exceeded")
    assert "TOKEN_MAX_CERTIFICATES" in raised.value.detail


def test_a_foreign_certificate_reads_exactly_as_a_missing_one() -> None:
    theirs = certificate(BOB, name="theirs")
    assert check_visible(bob, theirs, "theirs") is theirs
    assert check_visible(admin, theirs, "theirs") is theirs
    answers = []
    for found in (theirs, None):
        with pytest.raises(Refused) as raised:
            check_visible(alice, found, "theirs")
        error = raised.value
        answers.append((error.status, error.error, error.detail, error.field))
    assert (
        answers[0]
        == answers[1]
        == (404, "not_found", "certificate 'theirs' not found", "certificate")
    )


def test_lists_show_only_the_callers_own() -> None:
    stored = [certificate(ALICE, name="a"), certificate(BOB, name="b"), certificate(None, name="n")]
    assert [c.cert_name for c in visible(alice, stored)] == ["a"]
    assert [c.cert_name for c in visible(admin, stored)] == ["a", "b", "n"]


@pytest.mark.parametrize(
    ("held", "target", "served"),
    [
        (certificate(ALICE), proxy(ALICE), True),
        (certificate(ALICE), proxy(ALICE, cert_name="c"), True),
        (certificate(ALICE), proxy(ALICE, cert_name="other"), False),
        (certificate(ALICE), proxy(ALICE, "elsewhere.example.com"), False),
        (certificate(None), proxy(None), True),
        # another owner's certificate never serves the proxy, by domain or by name
        (certificate(BOB), proxy(ALICE), False),
        (certificate(BOB), proxy(ALICE, cert_name="c"), False),
        (certificate(ADMIN), proxy(ALICE), False),
        (certificate(BOB), proxy(None), False),
        # one token across a change of its secret: the admin's records keep the old hash
        (certificate("sha256:" + "0" * 64, by="admin"), proxy(ADMIN), True),
        (certificate("sha256:" + "0" * 64, by="bob"), proxy(ALICE), False),
    ],
)
def test_a_certificate_serves_only_its_owners_proxies(
    held: Certificate, target: ProxyTarget, served: bool
) -> None:
    assert serves(held, target) is served
    usable = usable_certificate(target, held)  # the one the proxy's name or domain chose
    assert (usable is held) is (links(held, target) and target.hostname in held.domains)


def test_an_issued_certificate_takes_a_domain_only_from_no_other_owners_proxy() -> None:
    mine = certificate(ALICE)
    assert may_take_domain(mine, None)
    assert may_take_domain(mine, proxy(ALICE))
    assert not may_take_domain(mine, proxy(BOB))


@pytest.mark.parametrize(
    ("who", "proxy_owner", "named", "answer"),
    [
        (alice, ALICE, None, None),
        (alice, ALICE, certificate(ALICE), None),
        (alice, ALICE, certificate(BOB), 404),
        (alice, ALICE, certificate(None), 404),
        (admin, ALICE, certificate(BOB), 403),
        (admin, ALICE, certificate(ADMIN), 403),
        (admin, ALICE, certificate(ALICE), None),
        (admin, ADMIN, certificate(ADMIN), None),
    ],
)
def test_a_proxy_may_name_only_its_owners_certificate(
    who: Caller, proxy_owner: str, named: Certificate | None, answer: int | None
) -> None:
    target = proxy(proxy_owner)
    if answer is None:
        check_attach(who, target, named)
        return
    with pytest.raises(Refused) as raised:
        check_attach(who, target, named)
    assert raised.value.status == answer
    assert raised.value.field == ("cert_name" if answer == 403 else "certificate")


def test_a_full_reconcile_serves_a_proxy_by_its_domain_only_with_its_owners_certificate() -> None:
    alices = certificate(ALICE, name="alices")
    index = CertificateIndex([alices, certificate(BOB, name="bobs"), certificate(BOB, name="z")])
    assert index.for_proxy(proxy(ALICE)) is alices
    assert index.for_proxy(proxy(ADMIN)) is None
    pending = certificate(ALICE, name="later", issued=False)
    assert CertificateIndex([alices, pending]).for_proxy(proxy(ALICE)) is alices
    assert CertificateIndex([alices]).for_proxy(proxy(ALICE, cert_name="gone")) is None


def test_the_claims_on_names_come_from_the_stored_proxies_and_certificates() -> None:
    stored = [
        certificate(BOB, HOST, "other.example.com", name="b"),
        certificate(None, HOST, name="n"),
        certificate(ALICE, "other.example.com", name="a"),
    ]
    claims = name_claims([HOST, "other.example.com", "free.example.com"], [proxy(ALICE)], stored)
    assert claims == [
        NameClaims(HOST, has_proxy=True, proxy_owner=ALICE,
                   certificate_owners=frozenset({BOB, None})),
        NameClaims("other.example.com", certificate_owners=frozenset({BOB, ALICE})),
        NameClaims("free.example.com"),
    ]  # fmt: skip
    check_create(alice, claims[:1] + claims[2:], owned=0, quota=1)
    with pytest.raises(Refused):
        check_create(alice, claims, owned=0, quota=1)
