"""Certificates in the tenant model, over the admin API and on the HTTPS wire: one owner can
neither claim another's hostname with a certificate, nor serve, read, renew or delete what is not
theirs; the quota bounds how many an owner makes. The attack of issue 9 (a self-signed
certificate for another owner's hostname, served by that owner's proxy) is the first test."""

from __future__ import annotations

import functools
import hashlib
import json
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import h11
import httpx
import pytest
import trio

from oauthproxy.api.certificates import ACME_ACCOUNT_EMAILS_PER_DAY, SELF_SIGNED_PER_MINUTE
from oauthproxy.certificates.orders import ACME_ORDERS_PER_HOUR
from oauthproxy.models.common import utcnow
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from tests.backend import serve_backend
from tests.eventually import eventually
from tests.test_proxies_api import as_new_token, assert_error, events, stored

CERTS = "/api/v1/certificates/"
TARGETS = "/api/v1/proxy/targets/"
VICTIM = "victim.example.com"


@dataclass(frozen=True)
class Served:
    fingerprint: str | None
    """Of the certificate the HTTPS port presented for the name; None when it refused it."""
    backend: str | None = None
    """Which backend answered `GET /echo` over that connection."""


async def over_https(port: int, hostname: str) -> Served:
    """Handshake with SNI `hostname` (any certificate accepted: which one is what we look at),
    then `GET /echo` on the same connection."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    stream = trio.SSLStream(
        await trio.open_tcp_stream("127.0.0.1", port), context, server_hostname=hostname
    )
    try:
        await stream.do_handshake()
    except trio.BrokenResourceError:
        return Served(None)
    der: bytes = stream.getpeercert(binary_form=True)
    conn = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target="/echo", headers=[("Host", hostname)])
    await stream.send_all(conn.send(request) + conn.send(h11.EndOfMessage()))
    body = b""
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(65536)))
        elif isinstance(event, h11.Data):
            body += event.data
        elif isinstance(event, h11.EndOfMessage):
            break
    await stream.aclose()
    return Served("sha256:" + hashlib.sha256(der).hexdigest(), json.loads(body)["backend"])


async def until_served(port: int, hostname: str, done: Callable[[Served], bool]) -> Served:
    """What the HTTPS port serves for `hostname`, once `done` says it is what is expected (the
    supervisor follows Redis through events: a few moments)."""

    async def as_expected() -> Served | None:
        served = await over_https(port, hostname)
        return served if done(served) else None

    return await eventually(as_expected, what=f"what {hostname} is served with")


@pytest.fixture
async def backend(nursery: trio.Nursery) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, "alices-backend"))
    return port


@pytest.fixture
async def alice(api: httpx.AsyncClient, gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with as_new_token(api, gateway, "alice") as client:
        yield client


@pytest.fixture
async def mallory(api: httpx.AsyncClient, gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with as_new_token(api, gateway, "mallory") as client:
        yield client


async def self_signed(client: httpx.AsyncClient, name: str, *domains: str) -> httpx.Response:
    return await client.post(f"{CERTS}self-signed", json={"cert_name": name, "domains": domains})


async def new_proxy(client: httpx.AsyncClient, hostname: str, port: int, **fields: Any) -> Any:
    body = {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}", **fields}
    response = await client.post(TARGETS, json=body)
    assert response.status_code == 201, response.text
    return response.json()


async def test_a_self_signed_certificate_for_another_owners_hostname_is_refused(
    alice: httpx.AsyncClient,
    mallory: httpx.AsyncClient,
    gateway: Ready,
    storage: Storage,
    backend: int,
) -> None:
    # Alice's proxy serves HTTPS with her certificate through its domain (it names none).
    await new_proxy(alice, VICTIM, backend, enable_https=False)
    mine = await self_signed(alice, "alices", VICTIM)
    assert mine.status_code == 201, mine.text
    assert (await alice.put(f"{TARGETS}{VICTIM}", json={"enable_https": True})).status_code == 200
    expected = Served(mine.json()["fingerprint"], "alices-backend")
    await until_served(gateway.https_port, VICTIM, lambda s: s == expected)

    # Mallory makes a certificate of her own for Alice's hostname (once: served by Alice's proxy).
    attack = await self_signed(mallory, "evil", VICTIM)
    assert_error(attack, 403, "domains")
    assert attack.json()["error"] == "forbidden"
    assert await storage.certificates.get("evil") is None
    assert await storage.certificates.name_for_domain(VICTIM) == "alices"
    # ... nor by ordering it from the ACME CA, for that name among others.
    ordered = await mallory.post(
        f"{CERTS}multi-domain",
        json={"cert_name": "evil", "domains": ["free.example.com", VICTIM], "email": "m@x.test"},
    )
    assert_error(ordered, 403, "domains")
    # ... nor take Alice's away: for Mallory it does not exist.
    for response in (
        await mallory.delete(f"{CERTS}alices"),
        await mallory.post(f"{CERTS}alices/renew"),
        await mallory.get(f"{CERTS}alices"),
        await mallory.get(f"{CERTS}alices/status"),
    ):
        assert_error(response, 404, "certificate")
    before = len(await events(storage))
    assert (await mallory.delete(f"{TARGETS}{VICTIM}")).status_code in (403, 404)

    assert len(await events(storage)) == before
    assert await over_https(gateway.https_port, VICTIM) == expected
    assert (await stored(storage, VICTIM))["cert_name"] is None


async def test_a_certificate_made_before_the_proxy_never_serves_another_owners_proxy(
    api: httpx.AsyncClient,
    alice: httpx.AsyncClient,
    mallory: httpx.AsyncClient,
    gateway: Ready,
    storage: Storage,
    backend: int,
) -> None:
    # Nobody holds the name yet: Mallory may make a certificate for it ...
    early = await self_signed(mallory, "early", VICTIM)
    assert early.status_code == 201, early.text
    # ... but when Alice creates the proxy, it does not reuse Mallory's certificate,
    created = await alice.post(
        TARGETS, json={"hostname": VICTIM, "target_url": f"http://127.0.0.1:{backend}"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-certificate-action"] == "skipped"
    assert created.json()["cert_name"] is None
    # ... may not name it,
    named = await alice.put(f"{TARGETS}{VICTIM}", json={"cert_name": "early"})
    assert_error(named, 404, "certificate")
    # ... and the HTTPS port does not serve it for her name, though the domain still maps to it.
    assert await storage.certificates.name_for_domain(VICTIM) == "early"
    assert (await over_https(gateway.https_port, VICTIM)).fingerprint is None

    # Alice may now make her own (she owns the proxy), which serves her proxy.
    mine = await self_signed(alice, "alices", VICTIM)
    assert mine.status_code == 201, mine.text
    expected = Served(mine.json()["fingerprint"], "alices-backend")
    await until_served(gateway.https_port, VICTIM, lambda s: s == expected)

    # Hers renewed (not due: Mallory may not, the admin may) or deleted changes nothing of Alice's.
    before = len(await events(storage))
    serial = (await mallory.get(f"{CERTS}early")).json()["serial_number"]
    assert (await mallory.post(f"{CERTS}early/renew")).status_code == 409
    assert (await api.post(f"{CERTS}early/renew")).status_code == 202

    async def reissued() -> dict[str, Any] | None:
        body: dict[str, Any] = (await mallory.get(f"{CERTS}early")).json()
        return body if body["serial_number"] != serial else None

    renewed = await eventually(reissued, what="certificate early renewed")
    assert renewed["status"] == "active"
    deleted = await mallory.delete(f"{CERTS}early")
    assert deleted.json()["proxies_updated"] == []
    assert [e.hostname for e in (await events(storage))[before:]] == []
    assert await storage.certificates.name_for_domain(VICTIM) == "alices"
    assert (await stored(storage, VICTIM))["cert_name"] == "alices"
    assert await over_https(gateway.https_port, VICTIM) == expected


async def test_an_owner_lists_and_reads_only_their_own_certificates(
    api: httpx.AsyncClient, alice: httpx.AsyncClient, mallory: httpx.AsyncClient
) -> None:
    assert (await self_signed(alice, "alices", "a.example.com")).status_code == 201
    assert (await self_signed(mallory, "mallorys", "m.example.com")).status_code == 201
    assert (await self_signed(api, "admins", "admin.example.com")).status_code == 201

    def names(response: httpx.Response) -> list[str]:
        return [c["cert_name"] for c in response.json()]

    assert names(await alice.get(CERTS)) == ["alices"]
    assert names(await mallory.get(CERTS)) == ["mallorys"]
    assert names(await api.get(CERTS)) == ["admins", "alices", "mallorys"]
    missing = await alice.get(f"{CERTS}nothing")
    foreign = await alice.get(f"{CERTS}mallorys")
    assert (foreign.status_code, foreign.json()) == (
        missing.status_code,
        {**missing.json(), "detail": "certificate 'mallorys' not found"},
    )
    assert (await api.get(f"{CERTS}mallorys")).status_code == 200
    assert (await api.delete(f"{CERTS}mallorys")).status_code == 200


async def test_the_admin_may_certify_any_name_but_links_only_to_its_owners_proxies(
    api: httpx.AsyncClient, alice: httpx.AsyncClient, storage: Storage, backend: int
) -> None:
    await new_proxy(alice, VICTIM, backend)
    assert (await self_signed(api, "admins", VICTIM)).status_code == 201
    assert (await stored(storage, VICTIM))["cert_name"] is None
    refused = await api.put(f"{TARGETS}{VICTIM}", json={"cert_name": "admins"})
    assert_error(refused, 403, "cert_name")
    assert (await stored(storage, VICTIM))["cert_name"] is None


@pytest.fixture
async def small_quota(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> Ready:
    ready: Ready = await nursery.start(
        functools.partial(serve, make_settings(token_max_certificates=2), handle_signals=False)
    )
    return ready


async def test_the_certificate_quota_bounds_an_owner_but_not_the_admin(
    small_quota: Ready, storage: Storage, backend: int
) -> None:
    admin = {"Authorization": f"Bearer {small_quota.admin_token.secret}"}
    async with (
        httpx.AsyncClient(base_url=small_quota.api_url, headers=admin) as api,
        as_new_token(api, small_quota, "alice") as alice,
    ):
        for number in (1, 2):
            assert (
                await self_signed(alice, f"c{number}", f"{number}.example.com")
            ).status_code == 201
        over = await self_signed(alice, "c3", "3.example.com")
        assert over.status_code == 403
        assert over.json()["error"] == "quota_exceeded"
        assert "TOKEN_MAX_CERTIFICATES" in over.json()["detail"]
        assert await storage.redis.exists([keys.cert("c3"), keys.cert_domain("3.example.com")]) == 0
        # A proxy that would order one is still made, HTTP only, and says why.
        created = await alice.post(
            TARGETS,
            json={
                "hostname": "3.example.com",
                "target_url": f"http://127.0.0.1:{backend}",
                "cert_email": "alice@example.com",
            },
        )
        assert created.status_code == 201, created.text
        assert created.headers["x-certificate-action"] == "skipped"
        assert "TOKEN_MAX_CERTIFICATES" in created.headers["x-certificate-detail"]
        for number in (3, 4, 5):
            assert (await self_signed(api, f"a{number}", f"{number}.admin.test")).status_code == 201
        assert (await alice.delete(f"{CERTS}c1")).status_code == 200
        assert (await self_signed(alice, "c3", "3.example.com")).status_code == 201


async def test_a_domain_handed_to_another_owners_certificate_still_serves_the_owners_own(
    alice: httpx.AsyncClient,
    mallory: httpx.AsyncClient,
    gateway: Ready,
    storage: Storage,
    backend: int,
) -> None:
    # Mallory certified the name while nobody held it; Alice then made the proxy and two of her
    # own, and serves HTTPS through the domain (her proxy names none).
    assert (await self_signed(mallory, "aaa", VICTIM)).status_code == 201
    await new_proxy(alice, VICTIM, backend, enable_https=False)
    first = (await self_signed(alice, "alices", VICTIM)).json()
    second = (await self_signed(alice, "alices2", VICTIM)).json()
    assert (await alice.put(f"{TARGETS}{VICTIM}", json={"enable_https": True})).status_code == 200
    await until_served(gateway.https_port, VICTIM, lambda s: s.fingerprint == second["fingerprint"])

    # Deleting the one the domain maps to hands the mapping to the first certificate covering
    # it, Mallory's; Alice's proxy is served with her other one all the same.
    assert (await alice.delete(f"{CERTS}alices2")).status_code == 200
    assert await storage.certificates.name_for_domain(VICTIM) == "aaa"
    expected = Served(first["fingerprint"], "alices-backend")
    await until_served(gateway.https_port, VICTIM, lambda s: s == expected)


async def test_an_owner_cannot_squat_the_certificate_name_of_another_owners_proxy(
    api: httpx.AsyncClient,
    alice: httpx.AsyncClient,
    mallory: httpx.AsyncClient,
    storage: Storage,
    backend: int,
) -> None:
    """The certificate the gateway orders for a new HTTPS proxy is named after its hostname
    (`proxy-victim-example-com`), so anyone can foresee it. Mallory made a certificate under
    that name first, for a name of her own: Alice's proxy then got no certificate ("skipped: a
    certificate named proxy-victim-example-com exists already"), served HTTP only, and learnt
    that a certificate she may not see exists. Owners may no longer make `proxy-` names, and a
    proxy whose name is taken anyway (the admin's certificate, or one made before this rule)
    gets its own certificate under a name nobody can foresee."""
    squatted = "proxy-victim-example-com"
    squat = await self_signed(mallory, squatted, "mallory.example.com")
    assert_error(squat, 422, "cert_name")
    ordered = await mallory.post(
        CERTS, json={"cert_name": squatted, "domain": "mallory.example.com", "email": "m@x.test"}
    )
    assert_error(ordered, 422, "cert_name")
    assert await storage.certificates.get(squatted) is None

    assert (await self_signed(api, squatted, "admin.example.com")).status_code == 201
    created = await alice.post(
        TARGETS,
        json={
            "hostname": VICTIM,
            "target_url": f"http://127.0.0.1:{backend}",
            "cert_email": "alice@example.com",
            "staging": True,
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-certificate-action"] == "ordered", created.headers
    own = created.headers["x-certificate-name"]
    assert own.startswith("proxy-victim-example-com-") and own != squatted
    assert (
        created.headers["x-certificate-detail"]
        == f"ordering certificate {own} for alice@example.com"
    )
    certificate = await storage.certificates.get(own)
    assert certificate is not None
    assert certificate.domains == [VICTIM]
    assert certificate.created_by == "alice"
    assert (await alice.get(f"{CERTS}{own}")).status_code == 200


async def test_the_certificate_quota_holds_for_creates_sent_at_once(
    small_quota: Ready, storage: Storage
) -> None:
    """Twenty creates sent together each counted the owner's certificates before any of them
    was stored (the transaction watches only the new certificate's own keys), so all twenty
    were stored past a quota of 2. The owner's lock makes them count in turn."""
    admin = {"Authorization": f"Bearer {small_quota.admin_token.secret}"}
    async with (
        httpx.AsyncClient(base_url=small_quota.api_url, headers=admin) as api,
        as_new_token(api, small_quota, "greedy") as greedy,
    ):
        greedy.timeout = httpx.Timeout(60)
        answers: list[int] = []

        async def one(number: int) -> None:
            made = await self_signed(greedy, f"g{number}", f"g{number}.greedy.example")
            answers.append(made.status_code)

        async with trio.open_nursery() as burst:
            for number in range(20):
                burst.start_soon(one, number)
        assert sorted(answers)[:2] == [201, 201]
        # over the quota, busy, or past SELF_SIGNED_PER_MINUTE (counted before the quota)
        assert set(sorted(answers)[2:]) <= {403, 409, 429}, answers
        assert len((await greedy.get(CERTS)).json()) == 2


async def test_another_owners_certificates_cannot_be_probed_through_index_keys(
    alice: httpx.AsyncClient, mallory: httpx.AsyncClient
) -> None:
    """The path's name was read as the key `cert:{name}`, and the index keys share that prefix:
    `domain:{hostname}` read `cert:domain:{hostname}` (a 500 when some owner's certificate
    holds the hostname, a 404 when none does): who holds a hostname, and other owners' names
    through `status:{name}`. Anything that is not a name reads as a missing certificate."""
    assert (await self_signed(alice, "alice-shop", "shop.alice.example")).status_code == 201
    held = await mallory.get(f"{CERTS}domain:shop.alice.example")
    free = await mallory.get(f"{CERTS}domain:nothing.alice.example")
    assert (free.status_code, free.json()["error"]) == (404, "not_found")
    assert (held.status_code, held.json()["error"]) == (404, "not_found")
    for probe in (f"{CERTS}status:alice-shop", f"{CERTS}domain:shop.alice.example/status"):
        assert (await mallory.get(probe)).status_code == 404
    assert (await mallory.post(f"{CERTS}domain:shop.alice.example/renew")).status_code == 404
    assert (await mallory.delete(f"{CERTS}domain:shop.alice.example")).status_code == 404
    assert (await alice.get(f"{CERTS}alice-shop")).status_code == 200


async def test_an_owner_cannot_certify_the_gateways_own_hostnames(
    api: httpx.AsyncClient, gateway: Ready, make_settings: Callable[..., Settings]
) -> None:
    """An owner may not proxy the OAuth issuer's hostname or an API_HOSTNAMES one, yet could
    hold a certificate for them, renewed for ever: spending the CA's duplicate-certificate
    limit for exactly the hostname that carries every owner's tokens. Refused as for proxies."""
    issuer = httpx.URL(make_settings().oauth_issuer_url).host
    async with as_new_token(api, gateway, "squatter") as squatter:
        for name, domain in (("issuer", issuer), ("api-host", "localhost")):
            refused = await self_signed(squatter, name, domain)
            assert (refused.status_code, refused.json()["field"]) == (403, "domains"), domain
            assert "gateway's own hostname" in refused.json()["detail"]
    assert (await self_signed(api, "issuer", issuer)).status_code == 201  # the admin's to make


async def test_another_owners_certificate_events_stay_out_of_my_log(
    alice: httpx.AsyncClient, mallory: httpx.AsyncClient, api: httpx.AsyncClient
) -> None:
    """Mallory certifies a name nobody holds; Alice then proxies it (the proxy wins). The
    manager logged each of the certificate's events under its first domain, so Alice's log
    showed Mallory's certificate name, her renewals (when she liked) and her ACME errors. An
    event goes under a domain whose proxy the certificate's owner owns, else to the admin only."""
    assert (await self_signed(mallory, "mallory-cert", VICTIM)).status_code == 201
    await new_proxy(alice, VICTIM, 9, enable_https=False)
    assert (await api.post(f"{CERTS}mallory-cert/renew")).status_code == 202  # (not due yet)

    async def renewal_logged() -> bool:
        found = await api.get(
            "/api/v1/logs/search", params={"event": "certificate.issued", "limit": 50}
        )
        return any(entry["request_path"] == "mallory-cert" for entry in found.json()["logs"])

    await eventually(renewal_logged, what="Mallory's renewal in the admin's log")
    seen = await alice.get("/api/v1/logs/search", params={"hostname": VICTIM})
    assert seen.status_code == 200, seen.text
    assert [e for e in seen.json()["logs"] if e["request_path"] == "mallory-cert"] == []


async def test_an_owner_renews_only_what_is_due(
    api: httpx.AsyncClient, mallory: httpx.AsyncClient, storage: Storage
) -> None:
    """Each renewal is an order on an ACME account the owners may share (ADMIN_EMAIL's by
    default), whose limits are everyone's: four renews of a fresh certificate placed four
    orders. An owner renews only what the renewal loop would renew now; the admin, anything."""
    assert (await self_signed(mallory, "fresh", "fresh.mallory.example")).status_code == 201
    refused = await mallory.post(f"{CERTS}fresh/renew")
    assert (refused.status_code, refused.json()["error"]) == (409, "not_due")
    assert "RENEWAL_THRESHOLD_DAYS" in refused.json()["detail"]
    assert (await mallory.get(f"{CERTS}fresh")).json()["status"] == "active"  # left as it was
    stored_record = await storage.certificates.get("fresh")
    assert stored_record is not None
    soon = stored_record.model_copy(update={"expires_at": utcnow() + timedelta(days=2)})
    await storage.certificates.put(soon)  # inside the threshold (30 days): due
    assert (await mallory.post(f"{CERTS}fresh/renew")).status_code == 202


async def test_an_owner_makes_a_bounded_number_of_self_signed_keys_per_minute(
    api: httpx.AsyncClient, alice: httpx.AsyncClient, mallory: httpx.AsyncClient
) -> None:
    """Each self-signed certificate is a new key, made on CPU the data plane shares, and
    deleting one frees its quota slot: a create-delete loop made keys without end. Owners get
    SELF_SIGNED_PER_MINUTE; the next is a 429 with Retry-After, and stores nothing."""
    for number in range(SELF_SIGNED_PER_MINUTE):
        made = await self_signed(mallory, "loop", "loop.mallory.example")
        assert made.status_code == 201, (number, made.text)
        assert (await mallory.delete(f"{CERTS}loop")).status_code == 200
    limited = await self_signed(mallory, "loop", "loop.mallory.example")
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    assert (await mallory.get(f"{CERTS}loop")).status_code == 404
    # another owner, and the admin, count on their own
    assert (await self_signed(alice, "mine", "mine.alice.example")).status_code == 201
    for number in range(SELF_SIGNED_PER_MINUTE + 1):
        assert (await self_signed(api, f"adm{number}", f"{number}.adm.example")).status_code == 201


async def test_an_owner_names_a_bounded_number_of_new_acme_account_emails_per_day(
    api: httpx.AsyncClient, mallory: httpx.AsyncClient, backend: int
) -> None:
    """Each order could name any email, and each new email is a new account registered at the
    CA from the gateway's address, which CAs bound per address (Let's Encrypt: 10 per 3 hours):
    one owner's orders, each with a fresh email, left the gateway unable to register any
    account for hours (an attack hunt). An owner's orders name at most
    ACME_ACCOUNT_EMAILS_PER_DAY new emails; a known one still orders; a proxy that would order
    with one more is made without a certificate and says why."""
    for number in range(ACME_ACCOUNT_EMAILS_PER_DAY):
        body = {"cert_name": "e", "domain": "e.mallory.example", "email": f"m{number}@x.test"}
        assert (await mallory.post(CERTS, json=body)).status_code == 202, number
        assert (await mallory.delete(f"{CERTS}e")).status_code == 200
    body = {"cert_name": "e", "domain": "e.mallory.example", "email": "another@x.test"}
    limited = await mallory.post(CERTS, json=body)
    assert limited.status_code == 429, limited.text
    assert "new ACME account emails per day" in limited.json()["detail"]
    assert 3600 < int(limited.headers["retry-after"]) <= 86_400
    assert (await mallory.get(f"{CERTS}e")).status_code == 404
    known = {**body, "email": "M1@x.test"}  # (emails compare without case, as accounts do)
    assert (await mallory.post(CERTS, json=known)).status_code == 202
    created = await mallory.post(
        TARGETS,
        json={
            "hostname": "p.mallory.example",
            "target_url": f"http://127.0.0.1:{backend}",
            "cert_email": "yet-another@x.test",
        },
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-certificate-action"] == "skipped"
    assert "new ACME account emails" in created.headers["x-certificate-detail"]
    admins = {"cert_name": "adm", "domain": "adm.example.com", "email": "fresh@x.test"}
    assert (await api.post(CERTS, json=admins)).status_code == 202  # (the admin: no limit)


async def test_an_owner_orders_a_bounded_number_of_acme_certificates_per_hour(
    api: httpx.AsyncClient, mallory: httpx.AsyncClient
) -> None:
    """Every ACME order goes on the one account of ADMIN_EMAIL, whose order budget at the CA
    every owner shares, and deleting a certificate frees its quota slot: a create-delete loop
    placed orders without end (15 in ~5 s on Pebble, in today's hunt). Owners get
    ACME_ORDERS_PER_HOUR; the next is a 429 with Retry-After, and stores nothing."""
    for number in range(ACME_ORDERS_PER_HOUR):
        body = {"cert_name": "loop", "domain": "loop.mallory.example", "email": "m@x.test"}
        ordered = await mallory.post(CERTS, json=body)
        assert ordered.status_code == 202, (number, ordered.text)
        assert (await mallory.delete(f"{CERTS}loop")).status_code == 200
    limited = await mallory.post(CERTS, json=body)
    assert limited.status_code == 429, limited.text
    assert limited.json()["error"] == "too_many_requests"
    assert 1 <= int(limited.headers["retry-after"]) <= 3600
    assert (await mallory.get(f"{CERTS}loop")).status_code == 404
    admins = {"cert_name": "adm", "domain": "adm.example.com", "email": "a@x.test"}
    assert (await api.post(CERTS, json=admins)).status_code == 202  # (the admin: no limit)


async def test_the_owners_gateway_wide_order_count_is_atomic_and_counts_only_what_it_lets_through(
    storage: Storage,
) -> None:
    """ACME_OWNER_ORDERS_PER_HOUR is counted in one Lua step: 30 orders at once against a cap
    of 7 let exactly 7 through, and the refused ones are not counted (a burst past the cap
    does not push the window's count, or its end, further)."""
    results = []

    async def order() -> None:
        results.append(await storage.certificates.count_owner_acme_order(7, 3_600_000))

    async with trio.open_nursery() as nursery:
        for _ in range(30):
            nursery.start_soon(order)
    assert sorted(result.count for result in results if result.count) == list(range(1, 8))
    refused = [result for result in results if not result.count]
    assert len(refused) == 23
    assert all(0 < result.remaining_ms <= 3_600_000 for result in refused)
    assert await storage.redis.get(keys.acme_owner_orders_rate()) == "7"
    assert 0 < await storage.redis.pttl(keys.acme_owner_orders_rate()) <= 3_600_000
