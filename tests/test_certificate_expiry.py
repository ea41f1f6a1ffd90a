"""Certificate expiry: `/metrics` shows each certificate's not-after from memory, and a stored
certificate past it is logged once as `certificate.expired`. Real certificates (self-signed,
one made already expired), a real gateway on the session's Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import trio
from prometheus_client.parser import text_string_to_metric_families

from oauthproxy.certificates.expiry import ExpiryWatch
from oauthproxy.certificates.pem import Issued, now
from oauthproxy.certificates.self_signed import make_self_signed
from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.serve import Ready, serve
from oauthproxy.storage import Storage
from tests.eventually import eventually

GAUGE = "oauthproxy_certificate_expiry_timestamp_seconds"


def issued(days: int) -> Issued:
    """A real self-signed certificate valid for `days` from 5 minutes ago (0: expired)."""
    return make_self_signed(["exp.example.com"], cn="test", days=days, key_bits=2048)


def record(name: str, made: Issued, **fields: Any) -> Certificate:
    values: dict[str, Any] = {
        "cert_name": name,
        "domains": ["exp.example.com"],
        "status": CertificateStatus.ACTIVE,
        **made.fields(),
        **fields,
    }
    return Certificate.model_validate(values)


def test_each_expiry_is_reported_once() -> None:
    old, fresh = issued(0), issued(30)
    watch = ExpiryWatch()
    certificates = [record("old", old), record("fresh", fresh), record("pending", fresh)]
    certificates[2] = certificates[2].model_copy(update={"expires_at": None})
    at = now()
    assert [c.cert_name for c in watch.observe(certificates, at)] == ["old"]
    assert watch.observe(certificates, at) == []  # the next check: already reported
    assert watch.times == {
        "old": old.expires_at.timestamp(),
        "fresh": fresh.expires_at.timestamp(),
    }
    assert watch.soonest(at) == fresh.expires_at.timestamp() - at.timestamp()
    renewed = [record("old", fresh), record("fresh", fresh)]
    assert watch.observe(renewed, at) == []
    later = at + timedelta(days=31)  # the renewed one expired too: a new expiry, reported again
    assert sorted(c.cert_name for c in watch.observe(renewed, later)) == ["fresh", "old"]
    assert watch.soonest(later) is None
    assert watch.observe([], later) == [] and watch.times == {}  # deleted: forgotten


async def scrape(gateway: Ready, client: httpx.AsyncClient) -> dict[str, float]:
    response = await client.get("/metrics")
    assert response.status_code == 200, response.text
    return {
        sample.labels["name"]: sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
        if sample.name == GAUGE
    }


async def test_metrics_show_expiry_and_an_expired_certificate_is_logged_once(
    nursery: trio.Nursery, storage: Storage, make_settings: Any
) -> None:
    old, fresh = issued(0), issued(30)
    retry_later = now() + timedelta(days=1)  # its renewal failed: not retried during the test
    await storage.certificates.put(
        record("old-cert", old, status=CertificateStatus.ERROR, next_attempt_at=retry_later)
    )
    await storage.certificates.put(record("fresh-cert", fresh))
    gateway: Ready = await nursery.start(
        lambda task_status: serve(make_settings(), handle_signals=False, task_status=task_status)
    )
    headers = {"Authorization": f"Bearer {gateway.admin_token.secret}"}
    async with httpx.AsyncClient(base_url=gateway.api_url, headers=headers) as admin:

        async def both_shown() -> dict[str, float] | None:
            shown = await scrape(gateway, admin)
            return shown if len(shown) == 2 else None

        shown = await eventually(both_shown, what="both certificates' expiry in /metrics")
        assert shown == {
            "old-cert": old.expires_at.timestamp(),
            "fresh-cert": fresh.expires_at.timestamp(),
        }

        async def expired_events() -> list[dict[str, Any]] | None:
            answer = await admin.get("/api/v1/logs/search", params={"event": "certificate.expired"})
            found: list[dict[str, Any]] = answer.json()["logs"]
            return found or None

        found = await eventually(expired_events, what="the certificate.expired event")
    assert [(e["request_path"], e["hostname"], e["level"]) for e in found] == [
        ("old-cert", "exp.example.com", "ERROR")
    ]
    assert found[0]["gateway_reason"].startswith("expired at ")
