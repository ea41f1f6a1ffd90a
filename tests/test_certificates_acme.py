"""Certificates issued through the public API by a real gateway against a real Pebble.

Pebble validates HTTP-01 on the gateway's HTTP_PORT (its `httpPort`); the gateway answers from
Redis. What is checked: the stored chain verifies against Pebble's issuing root for its domains
and is served over HTTPS; one `certificate_ready` per domain; a stopped Pebble leaves a visible
error and a retry while the old certificate keeps serving; two gateways on one Redis place one
order; a renewal threshold swaps the certificate (a new serial, seen by a client).
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.verification import PolicyBuilder, Store

from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from oauthproxy.storage.events import parse_event
from tests.backend import serve_backend
from tests.conftest import free_port
from tests.eventually import eventually
from tests.pebble import Pebble, start_pebble
from tests.test_certificates_api import failed_twice
from tests.test_https import https_get, until_https
from tests.test_proxies_api import as_new_token

CERTS = "/api/v1/certificates/"
EMAIL = "ops@example.com"
SETTLE_SECONDS = 30.0


@dataclass
class Gateway:
    ready: Ready
    api: httpx.AsyncClient


@pytest.fixture
def http_port() -> int:
    """The gateway's HTTP_PORT, chosen first: Pebble validates there."""
    return free_port()


@pytest.fixture
async def pebble(nursery: trio.Nursery, tmp_path: Path, http_port: int) -> Pebble:
    return await start_pebble(nursery, tmp_path / "pebble", http_port)


@pytest.fixture
def start_gateway(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings], pebble: Pebble
) -> Callable[..., Any]:
    """Start a gateway that orders from Pebble; `overrides` are settings."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[Gateway]:
        settings = make_settings(
            acme_directory_url=pebble.directory_url,
            acme_ca_bundle=pebble.ca_file,
            acme_poll_interval_seconds=0.1,
            **overrides,
        )
        ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
        headers = {"Authorization": f"Bearer {ready.admin_token.secret}"}
        async with httpx.AsyncClient(base_url=ready.api_url, headers=headers) as api:
            yield Gateway(ready, api)

    return start


@pytest.fixture
async def gateway_a(start_gateway: Callable[..., Any], http_port: int) -> AsyncIterator[Gateway]:
    async with start_gateway(http_port=http_port, admin_email=EMAIL) as gateway:
        yield gateway


@pytest.fixture
async def backend(nursery: trio.Nursery) -> int:
    port: int = await nursery.start(functools.partial(serve_backend, "acme"))
    return port


# --- helpers -------------------------------------------------------------------------------------


async def progress(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await api.get(f"{CERTS}{name}/status")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def until(
    api: httpx.AsyncClient, name: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """Poll the status endpoint until `done(status)`; the last status."""

    async def settled() -> dict[str, Any] | None:
        status = await progress(api, name)
        return status if done(status) else None

    return await eventually(settled, what=f"certificate {name} status", within=SETTLE_SECONDS)


def is_active(status: dict[str, Any]) -> bool:
    return bool(status["certificate_status"] == "active" and status["status"] == "completed")


async def certificate(api: httpx.AsyncClient, name: str) -> dict[str, Any]:
    response = await api.get(f"{CERTS}{name}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def issue(api: httpx.AsyncClient, name: str, *domains: str) -> dict[str, Any]:
    """Order through the API and wait until the certificate is active."""
    if len(domains) == 1:
        body: dict[str, Any] = {"cert_name": name, "domain": domains[0]}
        response = await api.post(CERTS, json=body)
    else:
        body = {"cert_name": name, "domains": list(domains)}
        response = await api.post(f"{CERTS}multi-domain", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["status_url"] == f"{CERTS}{name}/status"
    await until(api, name, is_active)
    return await certificate(api, name)


def verify_chain(fullchain_pem: str, root: x509.Certificate, domain: str) -> x509.Certificate:
    """The leaf, after checking the chain leads to `root` for `domain`."""
    leaf, *intermediates = x509.load_pem_x509_certificates(fullchain_pem.encode())
    verifier = PolicyBuilder().store(Store([root])).build_server_verifier(x509.DNSName(domain))
    verifier.verify(leaf, intermediates)
    return leaf


async def root_file(pebble: Pebble, tmp_path: Path) -> Path:
    """This run's issuing root as a CA file, for TLS clients."""
    root = await pebble.issuing_root()
    path = tmp_path / f"pebble-root-{pebble.starts}.pem"
    path.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    return path


async def ready_events(storage: Storage) -> list[tuple[str, dict[str, Any]]]:
    entries = await storage.redis.xrange(keys.EVENTS_WORKFLOW)
    events = [parse_event(entry.field_values) for entry in entries]
    return [(e.hostname, e.data) for e in events if e.event_type.value == "certificate_ready"]


async def create_proxy(api: httpx.AsyncClient, hostname: str, port: int, **fields: Any) -> Any:
    body = {"hostname": hostname, "target_url": f"http://127.0.0.1:{port}", **fields}
    response = await api.post("/api/v1/proxy/targets/", json=body)
    assert response.status_code == 201, response.text
    return response


async def serial_seen(gateway: Gateway, hostname: str, ca: Path) -> str:
    answer = await until_https(gateway.ready.https_port, hostname, ca)
    assert answer.status == 200
    return str(answer.peer_certificate["serialNumber"]).lower().lstrip("0")


# --- tests ---------------------------------------------------------------------------------------


async def test_single_domain_certificate_chains_to_pebble_and_serves_https(
    gateway_a: Gateway, pebble: Pebble, storage: Storage, backend: int, tmp_path: Path
) -> None:
    issued = await issue(gateway_a.api, "one", "one.example.com")
    root = await pebble.issuing_root()
    leaf = verify_chain(issued["fullchain_pem"], root, "one.example.com")
    assert format(leaf.serial_number, "x") == issued["serial_number"]
    assert (issued["status"], issued["email"], issued["domains"]) == (
        "active",
        EMAIL,
        ["one.example.com"],
    )
    assert issued["acme_directory_url"] == pebble.directory_url
    assert issued["fingerprint"].startswith("sha256:")
    assert "private_key_pem" not in issued

    stored = await storage.certificates.get("one")
    assert stored is not None and stored.private_key_pem is not None
    key = serialization.load_pem_private_key(stored.private_key_pem.encode(), password=None)
    assert key.public_key() == leaf.public_key()
    assert key.key_size == 2048  # type: ignore[union-attr]
    assert await ready_events(storage) == [("one.example.com", {"cert_name": "one"})]
    assert pebble.orders() == 1

    reused = await create_proxy(gateway_a.api, "one.example.com", backend)
    assert reused.headers["x-certificate-action"] == "reused"
    assert reused.json()["cert_name"] == "one"
    answer = await until_https(
        gateway_a.ready.https_port, "one.example.com", await root_file(pebble, tmp_path)
    )
    assert answer.status == 200


async def test_an_ecdsa_key_is_ordered_when_configured(
    start_gateway: Callable[..., Any],
    http_port: int,
    pebble: Pebble,
    storage: Storage,
    backend: int,
    tmp_path: Path,
) -> None:
    """CERTIFICATE_KEY_TYPE=ecdsa-p256: the CSR carries a P-256 key, the CA issues for it, and
    the gateway serves it."""
    async with start_gateway(
        http_port=http_port, admin_email=EMAIL, certificate_key_type="ecdsa-p256"
    ) as gateway:
        issued = await issue(gateway.api, "ec", "ec.example.com")
        leaf = verify_chain(issued["fullchain_pem"], await pebble.issuing_root(), "ec.example.com")
        stored = await storage.certificates.get("ec")
        assert stored is not None and stored.private_key_pem is not None
        key = serialization.load_pem_private_key(stored.private_key_pem.encode(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp256r1"
        assert key.public_key() == leaf.public_key()
        await create_proxy(gateway.api, "ec.example.com", backend)
        answer = await until_https(
            gateway.ready.https_port, "ec.example.com", await root_file(pebble, tmp_path)
        )
        assert answer.status == 200


async def test_multi_domain_certificate_serves_each_name(
    gateway_a: Gateway, pebble: Pebble, storage: Storage, backend: int, tmp_path: Path
) -> None:
    names = ["a.example.com", "b.example.com", "c.example.com"]
    issued = await issue(gateway_a.api, "multi", *names)
    root = await pebble.issuing_root()
    for name in names:
        verify_chain(issued["fullchain_pem"], root, name)
    assert sorted(await ready_events(storage)) == [(n, {"cert_name": "multi"}) for n in names]
    for name in names:
        assert await storage.certificates.name_for_domain(name) == "multi"

    ca = await root_file(pebble, tmp_path)
    for name in names[:2]:
        await create_proxy(gateway_a.api, name, backend)
        answer = await until_https(gateway_a.ready.https_port, name, ca)
        assert answer.status == 200
        assert answer.peer_certificate["serialNumber"]


async def test_proxy_with_https_orders_its_certificate_and_upgrades(
    gateway_a: Gateway, pebble: Pebble, backend: int, tmp_path: Path
) -> None:
    created = await create_proxy(
        gateway_a.api, "smart.example.com", backend, cert_email="smart@example.com"
    )
    assert created.headers["x-certificate-action"] == "ordered"
    assert "proxy-smart-example-com" in created.headers["x-certificate-detail"]
    issued_status = await until(gateway_a.api, "proxy-smart-example-com", is_active)
    assert issued_status["cert_name"] == "proxy-smart-example-com"
    ordered = await certificate(gateway_a.api, "proxy-smart-example-com")
    assert ordered["email"] == "smart@example.com"
    answer = await until_https(
        gateway_a.ready.https_port, "smart.example.com", await root_file(pebble, tmp_path)
    )
    assert answer.status == 200
    linked = await gateway_a.api.get("/api/v1/proxy/targets/smart.example.com")
    assert linked.json()["cert_name"] == "proxy-smart-example-com"


async def test_stopped_acme_server_leaves_a_visible_error_a_retry_and_the_old_certificate(
    start_gateway: Callable[..., Any],
    http_port: int,
    pebble: Pebble,
    storage: Storage,
    backend: int,
    tmp_path: Path,
) -> None:
    async with start_gateway(
        http_port=http_port, admin_email=EMAIL, renewal_check_interval=1
    ) as gateway:
        before = await issue(gateway.api, "kept", "kept.example.com")
        await create_proxy(gateway.api, "kept.example.com", backend)
        old_ca = await root_file(pebble, tmp_path)
        assert await serial_seen(gateway, "kept.example.com", old_ca) == before["serial_number"]

        await pebble.stop()
        renewing = await gateway.api.post(f"{CERTS}kept/renew")
        assert renewing.status_code == 202, renewing.text
        failed = await until(gateway.api, "kept", lambda s: s["certificate_status"] == "error")
        assert "cannot reach the ACME server" in failed["last_error"]
        assert failed["next_attempt_at"] is not None
        assert failed["attempt"] >= 1
        after = await certificate(gateway.api, "kept")
        assert (after["fullchain_pem"], after["serial_number"]) == (
            before["fullchain_pem"],
            before["serial_number"],
        )
        assert await serial_seen(gateway, "kept.example.com", old_ca) == before["serial_number"]
        retried = await until(gateway.api, "kept", failed_twice)
        assert retried["certificate_status"] == "error"

        listed = (await gateway.api.get(CERTS)).json()
        assert [(c["cert_name"], c["status"]) for c in listed] == [("kept", "error")]
        assert listed[0]["last_error"] == retried["last_error"]

        await pebble.start()
        recovered = await until(gateway.api, "kept", is_active)
        assert recovered["last_error"] is None
        renewed = await certificate(gateway.api, "kept")
        assert renewed["serial_number"] != before["serial_number"]
        verify_chain(renewed["fullchain_pem"], await pebble.issuing_root(), "kept.example.com")


async def test_two_gateways_on_one_redis_place_one_order(
    start_gateway: Callable[..., Any], http_port: int, pebble: Pebble
) -> None:
    async with (
        start_gateway(http_port=http_port, admin_email=EMAIL) as first,
        start_gateway(admin_email=EMAIL) as second,
    ):
        await issue(first.api, "shared", "shared.example.com")
        assert pebble.orders() == 1
        renewals = [first.api, second.api, first.api, second.api]
        async with trio.open_nursery() as nursery:
            for api in renewals:
                nursery.start_soon(api.post, f"{CERTS}shared/renew")
        await until(second.api, "shared", is_active)
        await trio.sleep(1)  # a loser that lagged behind would order now, if it could
        assert pebble.orders() == 2
        assert await certificate(first.api, "shared") == await certificate(second.api, "shared")


async def test_renewal_threshold_swaps_the_certificate(
    start_gateway: Callable[..., Any],
    http_port: int,
    pebble: Pebble,
    backend: int,
    tmp_path: Path,
) -> None:
    async with start_gateway(
        http_port=http_port,
        admin_email=EMAIL,
        renewal_check_interval=0.5,
        renewal_threshold_days=36500,  # Pebble's certificates live 5 years: always due
    ) as gateway:
        first = await issue(gateway.api, "renewed", "renewed.example.com")
        await create_proxy(gateway.api, "renewed.example.com", backend)
        ca = await root_file(pebble, tmp_path)
        seen = {await serial_seen(gateway, "renewed.example.com", ca)}
        statuses: list[int] = []

        async def swapped() -> bool:
            answer = await https_get(gateway.ready.https_port, "renewed.example.com", ca)
            statuses.append(answer.status)
            seen.add(str(answer.peer_certificate["serialNumber"]).lower().lstrip("0"))
            return len(seen) >= 2

        await eventually(swapped, what="a second certificate served", within=SETTLE_SECONDS)
        assert set(statuses) == {200}
        assert first["serial_number"] in seen
        latest = await certificate(gateway.api, "renewed")
        assert latest["serial_number"] != first["serial_number"]


async def test_an_issuance_never_lands_in_a_certificate_made_again_under_its_name(
    gateway_a: Gateway,
) -> None:
    """Alice orders `shop` for her name and deletes it while it is being issued; Bob makes
    `shop` for his. Alice's issuance finished by writing her chain and key into whatever record
    was called `shop` then, Bob's (his HTTPS proxy served a chain for her name, active for 90
    days), and his own issuance never ran (the name was busy). The result belongs only to the
    record it was ordered for, and Bob's is issued after it."""
    gateway = gateway_a
    async with (
        as_new_token(gateway.api, gateway.ready, "alice") as alice,
        as_new_token(gateway.api, gateway.ready, "bob") as bob,
    ):
        made = await alice.post(CERTS, json={"cert_name": "shop", "domain": "a-shop.example.com"})
        assert made.status_code == 202, made.text

        async def ordering() -> bool:
            status = (await alice.get(f"{CERTS}shop/status")).json()
            return status.get("status") in ("ordering", "validating", "finalizing")

        await eventually(ordering, what="Alice's issuance under way", within=30)
        assert (await alice.delete(f"{CERTS}shop")).status_code == 200
        mine = await bob.post(CERTS, json={"cert_name": "shop", "domain": "b-shop.example.com"})
        assert mine.status_code == 202, mine.text
        await until(bob, "shop", is_active)
        issued = (await bob.get(f"{CERTS}shop")).json()
    leaf = x509.load_pem_x509_certificates(issued["fullchain_pem"].encode())[0]
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["b-shop.example.com"]


async def test_owners_together_stop_at_the_gateway_wide_order_cap_and_the_admin_never_does(
    start_gateway: Callable[..., Any], http_port: int
) -> None:
    """Every owner's orders go on the gateway's one ACME account, whose budget at the CA (Let's
    Encrypt: 300 new orders per 3 hours) the admin's orders and renewals need too: N owners
    each within their own hourly budget spent it together. ACME_OWNER_ORDERS_PER_HOUR caps
    them together; the next owner order is a 429 naming it, storing nothing, and the admin's
    order is still placed and issued."""
    async with start_gateway(
        http_port=http_port, admin_email=EMAIL, acme_owner_orders_per_hour=3
    ) as gateway:
        api, ready = gateway.api, gateway.ready
        async with (
            as_new_token(api, ready, "alice") as alice,
            as_new_token(api, ready, "bob") as bob,
        ):
            for owner, name in ((alice, "a1"), (bob, "b1"), (alice, "a2")):
                body = {"cert_name": name, "domain": f"{name}.owners.example"}
                ordered = await owner.post(CERTS, json=body)
                assert ordered.status_code == 202, (name, ordered.text)
            await until(bob, "b1", is_active)  # (real orders, at Pebble)

            body = {"cert_name": "b2", "domain": "b2.owners.example"}
            refused = await bob.post(CERTS, json=body)
            assert refused.status_code == 429, refused.text
            assert refused.json()["error"] == "too_many_requests"
            assert "ACME_OWNER_ORDERS_PER_HOUR" in refused.json()["detail"]
            assert "at most 3 " in refused.json()["detail"]
            assert 1 <= int(refused.headers["retry-after"]) <= 3600
            assert (await bob.get(f"{CERTS}b2")).status_code == 404
            another = {"cert_name": "c1", "domain": "c1.owners.example"}
            assert (await alice.post(CERTS, json=another)).status_code == 429

            # the admin's order, past the owners' cap: placed and issued; and its renewal too
            issued = await issue(api, "admins", "admin.owners.example")
            renewed = await api.post(f"{CERTS}admins/renew")
            assert renewed.status_code == 202, renewed.text

            async def reissued() -> bool:
                renewed_now = await certificate(api, "admins")
                return bool(renewed_now["serial_number"] != issued["serial_number"])

            await eventually(reissued, what="the admin's renewal", within=SETTLE_SECONDS)


async def point_at_nothing(pebble: Pebble, host: str) -> None:
    """challtestsrv answers `host` with an address where nothing listens: HTTP-01 fails."""
    url = f"http://127.0.0.1:{pebble.challtest_port}/add-a"
    async with httpx.AsyncClient() as client:
        answer = await client.post(url, json={"host": f"{host}.", "addresses": ["127.0.0.9"]})
    answer.raise_for_status()


async def test_an_owners_failing_certificate_does_not_spend_orders_past_the_owner_cap(
    start_gateway: Callable[..., Any], pebble: Pebble, http_port: int
) -> None:
    """The attack: ACME_OWNER_ORDERS_PER_HOUR counted only the orders the API took, but a
    certificate whose validation fails is ordered again by the renewal loop (after 5 min, 10,
    20 ... up to RENEWAL_CHECK_INTERVAL), each a new order on the shared ACME account: an owner
    ordering its 20 an hour of certificates for names that never validate made the gateway
    place ~120 orders an hour (Let's Encrypt allows an account 300 per 3 hours). Every retry of
    an owner's certificate now counts against the owner's and the owners' hourly windows; past
    them nothing is ordered and the certificate says why, and when it is tried next. The
    admin's failing certificate is retried regardless. (RENEWAL_CHECK_INTERVAL is 1 s only to
    fit the retries in a test.)"""
    async with start_gateway(
        http_port=http_port, admin_email=EMAIL, acme_owner_orders_per_hour=3,
        renewal_check_interval=1, server_host="127.0.0.1",  # (not on 127.0.0.9)
    ) as gateway:  # fmt: skip
        api, ready = gateway.api, gateway.ready
        await point_at_nothing(pebble, "fails.owner.example")
        await point_at_nothing(pebble, "fails.admin.example")
        async with as_new_token(api, ready, "mallory") as mallory:
            body = {"cert_name": "fails", "domain": "fails.owner.example"}
            ordered = await mallory.post(CERTS, json=body)
            assert ordered.status_code == 202, ordered.text

            async def deferred_or_past_the_cap() -> bool:
                status = await progress(mallory, "fails")
                said = "ACME_OWNER_ORDERS_PER_HOUR" in (status["last_error"] or "")
                return said or pebble.orders() > 3

            await eventually(deferred_or_past_the_cap, what="a deferral", within=SETTLE_SECONDS)
            await trio.sleep(3)  # three more retry intervals: nothing more is ordered
            placed = pebble.orders()
            assert placed == 3, f"{placed} orders for one owner certificate past the cap of 3"
            status = await progress(mallory, "fails")
            assert status["certificate_status"] == "error"
            assert "the last attempt failed" in status["last_error"], status
            assert status["attempt"] == 3  # the API's order and two retries failed; no fourth
            next_attempt = datetime.fromisoformat(status["next_attempt_at"])
            assert next_attempt - datetime.now(UTC) > timedelta(minutes=50)  # the window's end

            body = {"cert_name": "afails", "domain": "fails.admin.example"}
            assert (await api.post(CERTS, json=body)).status_code == 202

            def retried_past_the_cap(status: dict[str, Any]) -> bool:
                return int(status["attempt"]) >= 5  # (its fifth attempt: four orders failed)

            await until(api, "afails", retried_past_the_cap)
            assert pebble.orders() >= placed + 4  # past the owners' cap, never deferred
