"""The certificate manager's pure decisions: what is due, retry back-off, names of ordered
certificates, request validation. No I/O."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from oauthproxy.api.proxy_certificates import certificate_name
from oauthproxy.certificates.renewal import due, retry_delay, seconds_until_next_check
from oauthproxy.models.certificates import (
    Certificate,
    CertificateStatus,
    MultiDomainCertificateCreate,
)

NOW = datetime(2030, 1, 1, tzinfo=UTC)
THRESHOLD = timedelta(days=30)


def cert(status: CertificateStatus, **fields: object) -> Certificate:
    return Certificate.model_validate(
        {"cert_name": "c", "domains": ["a.example.com"], "status": status, **fields}
    )


@pytest.mark.parametrize(
    ("certificate", "expected"),
    [
        (cert(CertificateStatus.PENDING), True),
        (cert(CertificateStatus.RENEWING, expires_at=NOW + timedelta(days=80)), True),
        (cert(CertificateStatus.ACTIVE, expires_at=NOW + timedelta(days=31)), False),
        (cert(CertificateStatus.ACTIVE, expires_at=NOW + timedelta(days=30)), True),
        (cert(CertificateStatus.ACTIVE, expires_at=NOW - timedelta(days=1)), True),
        (cert(CertificateStatus.EXPIRED, expires_at=NOW - timedelta(days=1)), True),
        (cert(CertificateStatus.ERROR, next_attempt_at=NOW + timedelta(seconds=1)), False),
        (cert(CertificateStatus.ERROR, next_attempt_at=NOW), True),
        (cert(CertificateStatus.ERROR), True),
    ],
)
def test_due(certificate: Certificate, expected: bool) -> None:
    assert due(certificate, NOW, THRESHOLD) is expected


@pytest.mark.parametrize(
    ("certificate", "reads"),
    [
        (cert(CertificateStatus.ACTIVE, expires_at=NOW + timedelta(seconds=1)), "active"),
        (cert(CertificateStatus.ACTIVE, expires_at=NOW), "active"),
        (cert(CertificateStatus.ACTIVE, expires_at=NOW - timedelta(seconds=1)), "expired"),
        (cert(CertificateStatus.ERROR, expires_at=NOW - timedelta(days=3)), "expired"),
        (cert(CertificateStatus.RENEWING, expires_at=NOW - timedelta(days=3)), "expired"),
        (cert(CertificateStatus.ERROR), "error"),
        (cert(CertificateStatus.PENDING), "pending"),
    ],
)
def test_a_certificate_reads_expired_once_past_its_expiry(
    certificate: Certificate, reads: str
) -> None:
    assert certificate.as_of(NOW).status == reads
    assert due(certificate, NOW, THRESHOLD)  # an expired certificate is renewed as before


@pytest.mark.parametrize(
    ("failures", "interval", "seconds"),
    [
        (1, 86400, 300),
        (2, 86400, 600),
        (5, 86400, 4800),
        (20, 86400, 86400),
        (100, 86400, 86400),
        (1, 1, 1),
        (7, 1, 1),
        (3, 60, 60),
    ],
)
def test_retry_delay_doubles_up_to_the_check_interval(
    failures: int, interval: float, seconds: float
) -> None:
    assert retry_delay(failures, interval) == timedelta(seconds=seconds)


def test_next_check_comes_sooner_for_a_retry_only() -> None:
    later = cert(CertificateStatus.ERROR, next_attempt_at=NOW + timedelta(seconds=90))
    overdue = cert(CertificateStatus.ERROR, next_attempt_at=NOW - timedelta(seconds=5))
    fine = cert(CertificateStatus.ACTIVE, expires_at=NOW + timedelta(days=60))
    assert seconds_until_next_check([fine], NOW, 3600) == 3600
    assert seconds_until_next_check([fine, later, overdue], NOW, 3600) == 90
    assert seconds_until_next_check([later], NOW, 60) == 60


def test_ordered_certificate_names() -> None:
    assert certificate_name("api.example.com") == "proxy-api-example-com"
    long = ".".join(["label"] * 20) + ".example.com"
    name = certificate_name(long)
    assert len(name) == 64 and name.startswith("proxy-label-label")
    assert name != certificate_name(long.replace(".example.com", ".example.org"))


def test_multi_domain_requests_refuse_repeats_and_more_than_a_hundred() -> None:
    with pytest.raises(ValidationError, match=r"repeated: a\.example\.com"):
        MultiDomainCertificateCreate(cert_name="x", domains=["a.example.com", "a.example.com"])
    # Spellings of one name (case, a trailing dot) are one domain, kept once: the document's
    # `uniqueItems` allows them, so the validator must too.
    spelled = MultiDomainCertificateCreate(
        cert_name="x", domains=["a.example.com", "A.example.com.", "b.example.com"]
    )
    assert spelled.domains == ["a.example.com", "b.example.com"]
    with pytest.raises(ValidationError, match="at most 100"):
        MultiDomainCertificateCreate(
            cert_name="x", domains=[f"h{i}.example.com" for i in range(101)]
        )
