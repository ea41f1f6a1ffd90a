"""Certificates (`cert:{name}`), their generation status (`cert:status:{name}`) and the bodies of
the certificate API."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from oauthproxy.models.common import Email, Hostname, Name, OwnerHash, Record, Request, utcnow

MAX_DOMAINS = 100


class CertificateStatus(StrEnum):
    PENDING = "pending"
    """Ordered, never issued yet."""
    ACTIVE = "active"
    RENEWING = "renewing"
    """A renewal was asked for (manually or by the renewal loop) and has not finished."""
    ERROR = "error"
    """The last attempt failed; `last_error` says why, `next_attempt_at` when it is retried.
    A certificate issued earlier keeps serving."""
    EXPIRED = "expired"


class Certificate(Record):
    cert_name: Name
    domains: list[Hostname] = Field(min_length=1, max_length=MAX_DOMAINS)
    email: str | None = None
    acme_directory_url: str | None = None
    status: CertificateStatus = CertificateStatus.PENDING
    expires_at: datetime | None = None
    issued_at: datetime | None = None
    fingerprint: str | None = None
    serial_number: str | None = None
    fullchain_pem: str | None = None
    private_key_pem: str | None = None
    owner_token_hash: OwnerHash | None = None
    created_by: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
    last_error: str | None = None
    failures: int = 0
    """Failed attempts since the last success; the retry delay doubles with each."""
    next_attempt_at: datetime | None = None
    self_signed: bool = False

    @property
    def issued(self) -> bool:
        return bool(self.fullchain_pem and self.private_key_pem)

    def is_record_of(self, other: Certificate) -> bool:
        """Whether `other` is this very certificate, not one deleted and made again under its
        name (by its owner, or by another): an issuance's result belongs only to the record it
        was ordered for."""
        return (self.cert_name, self.created_at, self.owner_token_hash, self.domains) == (
            other.cert_name,
            other.created_at,
            other.owner_token_hash,
            other.domains,
        )

    def as_of(self, now: datetime) -> Certificate:
        """The certificate as it reads at `now`: `expired` once its `expires_at` has passed,
        whatever its renewal is doing (`/status` tells). Computed, never stored: the renewal
        loop works from the stored status and renews an expired certificate like any other."""
        if self.expires_at is None or now <= self.expires_at:
            return self
        return self.model_copy(update={"status": CertificateStatus.EXPIRED})


class IssuanceStage(StrEnum):
    QUEUED = "queued"
    ORDERING = "ordering"
    VALIDATING = "validating"
    FINALIZING = "finalizing"
    COMPLETED = "completed"
    FAILED = "failed"
    ELSEWHERE = "in_progress_elsewhere"
    """Another replica holds the issuance lock."""


class GenerationStatus(Record):
    """`cert:status:{name}`: what the latest issuance is doing, kept for a while after it ends."""

    cert_name: str
    status: str
    message: str = ""
    updated_at: datetime = Field(default_factory=utcnow)
    attempt: int = 0
    retry_at: datetime | None = None
    replica: str | None = None


class CertificateProgress(GenerationStatus):
    """The status endpoint's answer: the generation status beside the certificate's own state
    (which outlives the generation status)."""

    certificate_status: CertificateStatus
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    expires_at: datetime | None = None

    @classmethod
    def of(cls, certificate: Certificate, latest: GenerationStatus | None) -> CertificateProgress:
        status = latest or GenerationStatus(
            cert_name=certificate.cert_name,
            status=certificate.status.value,
            message=certificate.last_error or "",
            attempt=certificate.failures,
            retry_at=certificate.next_attempt_at,
        )
        return cls(
            **status.model_dump(),
            certificate_status=certificate.status,
            last_error=certificate.last_error,
            next_attempt_at=certificate.next_attempt_at,
            expires_at=certificate.expires_at,
        )


class FailingCertificate(Record):
    cert_name: str
    last_error: str | None
    next_attempt_at: datetime | None
    serving: bool
    """Whether a certificate issued earlier still serves meanwhile."""


class CertificateSummary(Record):
    """What `/health` says about certificates. A failing certificate is listed, but does not
    make the gateway unhealthy."""

    total: int
    active: int
    expired: int
    failing_count: int
    failing: list[FailingCertificate]
    """Named only to the admin token: they are every owner's (anyone else gets the count)."""

    @classmethod
    def of(cls, certificates: list[Certificate], now: datetime) -> CertificateSummary:
        certificates = [c.as_of(now) for c in certificates]
        failing = [
            FailingCertificate(
                cert_name=c.cert_name,
                last_error=c.last_error,
                next_attempt_at=c.next_attempt_at,
                serving=c.issued,
            )
            for c in sorted(certificates, key=lambda c: c.cert_name)
            if c.status is CertificateStatus.ERROR
        ]
        active = sum(1 for c in certificates if c.status is CertificateStatus.ACTIVE)
        expired = sum(1 for c in certificates if c.status is CertificateStatus.EXPIRED)
        return cls(
            total=len(certificates),
            active=active,
            expired=expired,
            failing_count=len(failing),
            failing=failing,
        )


# --- views: what the API returns -------------------------------------------------------------

SECRET_FIELDS = frozenset({"private_key_pem"})
PEM_FIELDS = frozenset({"private_key_pem", "fullchain_pem"})


def without(certificate: Certificate, fields: frozenset[str]) -> dict[str, object]:
    """The certificate as JSON values, minus `fields` (never hand out the private key)."""
    return certificate.model_dump(mode="json", exclude=set(fields))


# --- request bodies --------------------------------------------------------------------------


def _distinct(domains: Any) -> Any:
    """Each domain once, as given (the document's `uniqueItems`)."""
    if isinstance(domains, list):
        given = [d for d in domains if isinstance(d, str)]
        repeated = sorted({d for d in given if given.count(d) > 1})
        if repeated:
            raise ValueError(f"each domain may appear once; repeated: {', '.join(repeated)}")
    return domains


def _once(domains: list[str]) -> list[str]:
    """Names that differ only in case or a trailing dot are one domain: kept once."""
    return list(dict.fromkeys(domains))


Domains = Annotated[
    list[Hostname],
    Field(min_length=1, max_length=MAX_DOMAINS, json_schema_extra={"uniqueItems": True}),
    BeforeValidator(_distinct),
    AfterValidator(_once),
]


class AcmeOptions(Request):
    email: Email | None = Field(
        default=None,
        description="ACME account email (default: the token's cert_email, else ADMIN_EMAIL)",
    )
    staging: bool = Field(default=False, description="Order from ACME_STAGING_URL")


class CertificateCreate(AcmeOptions):
    cert_name: Name
    domain: Hostname

    @property
    def domains(self) -> list[str]:
        return [self.domain]


class MultiDomainCertificateCreate(AcmeOptions):
    cert_name: Name
    domains: Domains


class SelfSignedCertificateCreate(Request):
    cert_name: Name
    domains: Domains


class CertificateAccepted(Record):
    """The answer to an order: issuance runs in the background; poll `status_url`."""

    cert_name: str
    domains: list[str]
    status: str
    status_url: str
    message: str


class CertificateDeleted(Record):
    cert_name: str
    deleted: bool = True
    proxies_updated: list[str] = Field(default_factory=list)
    """Proxies that served HTTPS with it: they fall back to HTTP (`proxy_updated` was queued)."""


class AcmeAccount(Record):
    """`acme:account:{directory-hash}:{email}`: one ACME account per directory and email."""

    directory_url: str
    email: str
    key_pem: str
    uri: str | None = None
    created_at: datetime = Field(default_factory=utcnow)
