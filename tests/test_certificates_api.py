"""The certificate endpoints over real HTTP against a real gateway and Redis, without an ACME
server: its directory is a closed port, so every ACME order fails (visibly). Bad input, private
keys, self-signed certificates, deletion falling proxies back to HTTP, smart certificates."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from oauthproxy.certificates.pem import Issued, describe
from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.serve import Ready, serve
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage, keys
from tests.conftest import free_port
from tests.eventually import eventually
from tests.test_proxies_api import as_new_token, assert_error, events, stored

CERTS = "/api/v1/certificates/"
TARGETS = "/api/v1/proxy/targets/"
UNREACHABLE = f"https://127.0.0.1:{free_port()}/dir"


@pytest.fixture
async def gateway(
    nursery: trio.Nursery, storage: Storage, make_settings: Callable[..., Settings]
) -> Ready:
    """A gateway whose ACME directory does not answer, retrying failures every second."""
    settings = make_settings(
        acme_directory_url=UNREACHABLE, renewal_check_interval=1, self_signed_cn="gateway.local"
    )
    ready: Ready = await nursery.start(functools.partial(serve, settings, handle_signals=False))
    return ready


@pytest.fixture
async def bob(api: httpx.AsyncClient, gateway: Ready) -> AsyncIterator[httpx.AsyncClient]:
    async with as_new_token(api, gateway, "bob") as client:
        yield client


async def self_signed(api: httpx.AsyncClient, name: str, *domains: str) -> Any:
    response = await api.post(f"{CERTS}self-signed", json={"cert_name": name, "domains": domains})
    assert response.status_code == 201, response.text
    return response.json()


async def order(api: httpx.AsyncClient, name: str, domain: str, **fields: Any) -> Any:
    body = {"cert_name": name, "domain": domain, "email": "ops@example.com", **fields}
    response = await api.post(CERTS, json=body)
    assert response.status_code == 202, response.text
    return response.json()


async def until(
    api: httpx.AsyncClient, url: str, done: Callable[[dict[str, Any]], bool]
) -> dict[str, Any]:
    """GET `url` until `done(body)`; the last body."""

    async def as_expected() -> dict[str, Any] | None:
        body: dict[str, Any] = (await api.get(url)).json()
        return body if done(body) else None

    return await eventually(as_expected, what=f"GET {url}", within=20)


def expired_certificate(domain: str) -> Issued:
    """A real self-signed certificate for `domain` (and its key) whose not-after passed a day
    ago."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    not_after = datetime.now(UTC) - timedelta(days=1)
    leaf = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_after - timedelta(days=90))
        .not_valid_after(not_after)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return describe(leaf.public_bytes(serialization.Encoding.PEM).decode(), key_pem.decode())


async def store_expired(storage: Storage, name: str, domain: str, **fields: Any) -> Issued:
    """Store an issued, `active` certificate whose chain has expired; its issued fields."""
    issued = expired_certificate(domain)
    record = {"cert_name": name, "domains": [domain], "status": "active", **issued.fields()}
    await storage.certificates.put(Certificate.model_validate({**record, **fields}))
    return issued


async def test_bad_input_is_a_4xx_naming_the_problem(api: httpx.AsyncClient) -> None:
    many = [f"h{i}.example.com" for i in range(101)]
    for path, body, field in (
        ("", {"cert_name": "x", "domain": "not a host", "email": "a@b.co"}, "domain"),
        ("", {"cert_name": "x", "domain": "-bad.example.com", "email": "a@b.co"}, "domain"),
        ("", {"cert_name": "no spaces", "domain": "a.example.com"}, "cert_name"),
        ("", {"cert_name": "x", "domain": "a.example.com", "email": "nope"}, "email"),
        ("", {"cert_name": "x", "domain": "a.example.com", "staging": "maybe"}, "staging"),
        ("multi-domain", {"cert_name": "x", "domains": many, "email": "a@b.co"}, "domains"),
        ("multi-domain", {"cert_name": "x", "domains": [], "email": "a@b.co"}, "domains"),
        ("multi-domain", {"cert_name": "x", "domains": ["a.example.com", "b_c"]}, "domains.1"),
        ("multi-domain", {"cert_name": "x", "domains": ["a.example.com", "a.example.com"]},
         "domains"),
        ("self-signed", {"cert_name": "x", "domains": ["a..example.com"]}, "domains.0"),
    ):  # fmt: skip
        response = await api.post(f"{CERTS}{path}", json=body)
        assert_error(response, 422, field)
    too_many = await api.post(
        f"{CERTS}multi-domain", json={"cert_name": "x", "domains": many, "email": "a@b.co"}
    )
    assert "at most 100" in too_many.json()["detail"]
    no_email = await api.post(CERTS, json={"cert_name": "x", "domain": "a.example.com"})
    assert_error(no_email, 422, "email")
    assert "ADMIN_EMAIL" in no_email.json()["detail"]
    assert (await api.get(CERTS)).json() == []


async def test_unknown_certificate_is_a_404_naming_it(api: httpx.AsyncClient) -> None:
    for response in (
        await api.get(f"{CERTS}missing"),
        await api.get(f"{CERTS}missing/status"),
        await api.post(f"{CERTS}missing/renew"),
        await api.delete(f"{CERTS}missing"),
    ):
        assert_error(response, 404, "certificate")
        assert "missing" in response.json()["detail"]


async def test_a_name_is_taken_once(api: httpx.AsyncClient) -> None:
    await self_signed(api, "taken", "a.example.com")
    body = {"cert_name": "taken", "domain": "b.example.com", "email": "ops@example.com"}
    again = await api.post(CERTS, json=body)
    assert_error(again, 409, "cert_name")


async def test_hundred_domains_are_accepted(api: httpx.AsyncClient, storage: Storage) -> None:
    domains = [f"h{i}.example.com" for i in range(100)]
    body = {"cert_name": "hundred", "domains": domains, "email": "ops@example.com"}
    response = await api.post(f"{CERTS}multi-domain", json=body)
    assert response.status_code == 202, response.text
    assert response.json()["domains"] == domains
    assert await storage.certificates.name_for_domain("h99.example.com") == "hundred"


async def test_private_keys_never_leave_the_api(api: httpx.AsyncClient, storage: Storage) -> None:
    await self_signed(api, "local", "local.example.com")
    await order(api, "acme", "acme.example.com")
    listed = (await api.get(CERTS)).json()
    assert [c["cert_name"] for c in listed] == ["acme", "local"]
    for entry in listed:
        assert "private_key_pem" not in entry and "fullchain_pem" not in entry
    shown = (await api.get(f"{CERTS}local")).json()
    assert "private_key_pem" not in shown
    assert shown["fullchain_pem"].startswith("-----BEGIN CERTIFICATE-----")
    assert "PRIVATE KEY" not in (await api.get(f"{CERTS}local?include_key=true")).text
    kept = await storage.certificates.get("local")
    assert kept is not None and "PRIVATE KEY" in (kept.private_key_pem or "")


async def test_self_signed_certificate_is_active_at_once(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    created = await self_signed(api, "dev", "dev.example.com", "api.dev.example.com")
    assert (created["status"], created["self_signed"]) == ("active", True)
    assert "private_key_pem" not in created
    leaf = x509.load_pem_x509_certificate(created["fullchain_pem"].encode())
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["dev.example.com", "api.dev.example.com"]
    common_name = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert common_name == "gateway.local"
    validity = leaf.not_valid_after_utc - leaf.not_valid_before_utc
    assert validity.days == 365
    assert format(leaf.serial_number, "x") == created["serial_number"]
    ready = [e for e in await events(storage) if e.event_type.value == "certificate_ready"]
    assert [(e.hostname, e.data) for e in ready] == [
        ("dev.example.com", {"cert_name": "dev"}),
        ("api.dev.example.com", {"cert_name": "dev"}),
    ]


async def test_renewing_a_self_signed_certificate_replaces_it(api: httpx.AsyncClient) -> None:
    created = await self_signed(api, "dev", "dev.example.com")
    renewing = await api.post(f"{CERTS}dev/renew")
    assert renewing.status_code == 202, renewing.text
    assert renewing.json()["status"] == "renewing"
    shown = await until(api, f"{CERTS}dev", lambda c: c["status"] == "active")
    assert shown["serial_number"] != created["serial_number"]


def failed_twice(status: dict[str, Any]) -> bool:
    return bool(status["status"] == "failed" and status["attempt"] >= 2)


async def test_a_failing_acme_server_is_visible_and_retried(api: httpx.AsyncClient) -> None:
    accepted = await order(api, "failing", "failing.example.com")
    assert (accepted["status"], accepted["status_url"]) == ("pending", f"{CERTS}failing/status")
    status = await until(api, accepted["status_url"], failed_twice)
    assert status["certificate_status"] == "error"
    assert "cannot reach the ACME server" in status["last_error"]
    assert status["retry_at"] is not None and status["next_attempt_at"] is not None
    shown = (await api.get(f"{CERTS}failing")).json()
    assert (shown["status"], shown["fullchain_pem"]) == ("error", None)
    assert shown["failures"] >= 2
    health = await api.get("/health")
    assert health.status_code == 200  # a failing certificate is not an unhealthy gateway
    summary = health.json()["certificates"]
    assert (summary["total"], summary["active"]) == (1, 0)
    [failing] = summary["failing"]
    assert (failing["cert_name"], failing["serving"]) == ("failing", False)
    assert "cannot reach the ACME server" in failing["last_error"]
    # anyone else gets the count: the names and errors are every owner's
    async with httpx.AsyncClient(base_url=str(api.base_url)) as anonymous:
        anonymous_health = (await anonymous.get("/health")).json()["certificates"]
    assert (anonymous_health["failing_count"], anonymous_health["failing"]) == (1, [])


async def test_a_certificate_past_its_expiry_reads_expired(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    acme = {"email": "ops@example.com", "acme_directory_url": UNREACHABLE}
    issued = await store_expired(storage, "old", "old.example.com", **acme)

    listed = (await api.get(CERTS)).json()
    assert [(c["cert_name"], c["status"]) for c in listed] == [("old", "expired")]
    shown = (await api.get(f"{CERTS}old")).json()
    assert (shown["status"], shown["serial_number"]) == ("expired", issued.serial_number)
    assert datetime.fromisoformat(shown["expires_at"]) == issued.expires_at
    # the renewal loop takes it up as before (and fails here, visibly); it still reads expired
    status = await until(api, f"{CERTS}old/status", lambda s: s["status"] == "failed")
    assert status["certificate_status"] == "expired"
    assert "cannot reach the ACME server" in status["last_error"]
    assert (await api.get(f"{CERTS}old")).json()["status"] == "expired"
    summary = (await api.get("/health")).json()["certificates"]
    assert (summary["total"], summary["active"], summary["expired"]) == (1, 0, 1)
    kept = await storage.certificates.get("old")
    assert kept is not None and kept.status is CertificateStatus.ERROR  # stored: the renewal's


async def test_an_expired_self_signed_certificate_is_renewed(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    issued = await store_expired(storage, "old", "old.example.com", self_signed=True)
    renewed = await until(api, f"{CERTS}old", lambda c: c["status"] == "active")
    assert renewed["serial_number"] != issued.serial_number
    assert datetime.fromisoformat(renewed["expires_at"]) > datetime.now(UTC)


async def test_only_the_owner_or_the_admin_may_see_renew_or_delete(
    api: httpx.AsyncClient, bob: httpx.AsyncClient
) -> None:
    await self_signed(api, "admins", "admins.example.com")
    for response in (
        await bob.post(f"{CERTS}admins/renew"),
        await bob.delete(f"{CERTS}admins"),
        await bob.get(f"{CERTS}admins"),
    ):
        assert_error(response, 404, "certificate")
    await self_signed(bob, "bobs", "bobs.example.com")
    assert (await api.delete(f"{CERTS}bobs")).status_code == 200


async def test_delete_falls_the_proxies_it_served_back_to_http(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await self_signed(api, "other", "by-domain.example.com")
    await self_signed(api, "gone", "named.example.com", "by-domain.example.com")
    for hostname, cert_name in (
        ("named.example.com", "gone"),
        ("by-domain.example.com", None),
        ("unrelated.example.com", None),
    ):
        body = {"hostname": hostname, "target_url": "http://127.0.0.1:3000", "enable_https": False}
        created = await api.post(TARGETS, json={**body, "cert_name": cert_name})
        assert created.status_code == 201, created.text
    before = len(await events(storage))

    response = await api.delete(f"{CERTS}gone")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "cert_name": "gone",
        "deleted": True,
        "proxies_updated": ["by-domain.example.com", "named.example.com"],
    }
    published = [(e.event_type.value, e.hostname, e.data) for e in (await events(storage))[before:]]
    assert published == [
        ("proxy_updated", "by-domain.example.com", _listeners(None)),
        ("proxy_updated", "named.example.com", _listeners(None)),
    ]
    assert (await stored(storage, "named.example.com"))["cert_name"] is None
    assert await storage.redis.exists([keys.cert("gone"), keys.cert_status("gone")]) == 0
    assert await storage.certificates.name_for_domain("named.example.com") is None
    assert await storage.certificates.name_for_domain("by-domain.example.com") == "other"
    assert_error(await api.get(f"{CERTS}gone"), 404, "certificate")


async def test_deleting_a_proxy_with_its_certificate_tells_the_others_using_it(
    api: httpx.AsyncClient, bob: httpx.AsyncClient, storage: Storage
) -> None:
    await self_signed(api, "shared", "mine.example.com", "bobs.example.com")
    for hostname in ("mine.example.com", "bobs.example.com"):
        body = {"hostname": hostname, "target_url": "http://127.0.0.1:3000"}
        created = await api.post(TARGETS, json=body)
        assert created.json()["cert_name"] == "shared", created.text
    body = {"hostname": "bob.example.com", "target_url": "http://127.0.0.1:3000"}
    refused = await bob.post(TARGETS, json={**body, "cert_name": "shared"})
    assert_error(refused, 404, "certificate")  # another owner's certificate is never linked
    before = len(await events(storage))

    response = await api.delete(f"{TARGETS}mine.example.com?delete_certificate=true")

    assert response.json()["deleted_certificate"] == "shared", response.text
    published = [(e.event_type.value, e.hostname, e.data) for e in (await events(storage))[before:]]
    assert published == [
        ("proxy_deleted", "mine.example.com", _listeners("shared", https=True)),
        ("proxy_updated", "bobs.example.com", _listeners(None, https=True)),
    ]
    assert (await stored(storage, "bobs.example.com"))["cert_name"] is None
    assert await storage.certificates.name_for_domain("bobs.example.com") is None


def _listeners(cert_name: str | None, *, https: bool = False) -> dict[str, Any]:
    return {"enable_http": True, "enable_https": https, "cert_name": cert_name}


async def test_https_proxy_reuses_orders_or_skips_its_certificate(
    api: httpx.AsyncClient, storage: Storage
) -> None:
    await self_signed(api, "covering", "covered.example.com")

    async def create(hostname: str, **fields: Any) -> httpx.Response:
        body = {"hostname": hostname, "target_url": "http://127.0.0.1:3000", **fields}
        response = await api.post(TARGETS, json=body)
        assert response.status_code == 201, response.text
        return response

    reused = await create("covered.example.com")
    assert reused.headers["x-certificate-action"] == "reused"
    assert reused.json()["cert_name"] == "covering"

    skipped = await create("no-email.example.com")
    assert skipped.headers["x-certificate-action"] == "skipped"
    assert "no email" in skipped.headers["x-certificate-detail"]
    assert skipped.json()["cert_name"] is None
    assert await storage.certificates.get("proxy-no-email-example-com") is None

    ordered = await create("new.example.com", cert_email="ops@example.com", staging=True)
    assert ordered.headers["x-certificate-action"] == "ordered"
    assert ordered.json()["cert_name"] is None  # named once issued
    certificate = await storage.certificates.get("proxy-new-example-com")
    assert certificate is not None
    assert (certificate.domains, certificate.email) == (["new.example.com"], "ops@example.com")
    assert (
        certificate.acme_directory_url == "https://acme-staging-v02.api.letsencrypt.org/directory"
    )

    plain = await create("plain.example.com", enable_https=False)
    assert "x-certificate-action" not in plain.headers
