"""`/api/v1/certificates/`: ACME certificates (single and multi-domain), self-signed ones, their
generation status, manual renewal and deletion.

Ordering is asynchronous: the request stores the certificate (`status=pending`) and hands its
name to this replica's certificate manager, then answers 202 with the status URL. Private keys
are never returned: they go from the manager to Redis and from Redis to the TLS listener.
A certificate past its `expires_at` reads as `expired` (see `Certificate.as_of`).

Who may create, see, renew and delete which certificate is `tenancy.certificates`'s to decide:
the handlers gather the facts (the caller, the stored records) and ask it, and the new
certificate's claims are judged inside the transaction that stores it
(`cascades.create_certificate`).
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from typing import NoReturn

from quart import Blueprint, current_app
from quart_schema import document_response, validate_request

from oauthproxy.api.auth import current_token, requires_token
from oauthproxy.api.contract import Answer, answers
from oauthproxy.api.errors import ApiError
from oauthproxy.api.ownership import (
    Json,
    owner_serialized,
    ownership,
    reserved_hostnames,
    storage,
    tenant_of,
)
from oauthproxy.api.state import app_state
from oauthproxy.certificates.manager import CertificateManager
from oauthproxy.certificates.orders import ACME_ORDERS_PER_HOUR, HOUR_MS
from oauthproxy.certificates.renewal import due
from oauthproxy.certificates.self_signed import self_signed_for
from oauthproxy.models.certificates import (
    PEM_FIELDS,
    SECRET_FIELDS,
    AcmeOptions,
    Certificate,
    CertificateAccepted,
    CertificateCreate,
    CertificateDeleted,
    CertificateProgress,
    CertificateStatus,
    MultiDomainCertificateCreate,
    SelfSignedCertificateCreate,
    without,
)
from oauthproxy.models.common import NAME_PATTERN, utcnow
from oauthproxy.models.errors import ErrorBody
from oauthproxy.settings import Settings
from oauthproxy.storage import cascades
from oauthproxy.storage.acme_accounts import AcmeAccountRepository
from oauthproxy.storage.cascades import ClaimCheck
from oauthproxy.storage.windows import WindowCount
from oauthproxy.tenancy.caller import Caller
from oauthproxy.tenancy.certificates import (
    NameClaims,
    check_create,
    check_name,
    check_renew,
    check_visible,
    visible,
)

certificates = Blueprint("certificates", __name__, url_prefix="/api/v1/certificates")

NAME = re.compile(NAME_PATTERN)


def _settings() -> Settings:
    return app_state(current_app).settings


def manager() -> CertificateManager:
    """This replica's certificate manager (503 when the app runs without one)."""
    running = app_state(current_app).certificates
    if running is None:
        raise ApiError(503, "unavailable", "the certificate manager is not running")
    return running


def acme_email(given: str | None) -> str | None:
    """The ACME account email: the request's, else the token's `cert_email`, else ADMIN_EMAIL."""
    return given or current_token().cert_email or _settings().admin_email


def new_acme_certificate(
    name: str, domains: list[str], email: str, *, staging: bool
) -> Certificate:
    settings = _settings()
    directory = settings.acme_staging_url if staging else settings.acme_directory_url
    return Certificate(
        cert_name=name,
        domains=domains,
        email=email,
        acme_directory_url=str(directory),
        **ownership(),
    )


def status_url(name: str) -> str:
    return f"{certificates.url_prefix}/{name}/status"


def caller() -> Caller:
    return Caller.of(current_token())


def _claim_check() -> ClaimCheck | None:
    """What refuses a new certificate of the caller's: another owner holding one of its names,
    or the certificate quota used up (`Refused`); nothing for the admin."""
    who = caller()
    if who.is_admin:
        return None
    quota, reserved = _settings().token_max_certificates, reserved_hostnames()

    def check(claims: list[NameClaims], owned: int) -> None:
        check_create(who, claims, owned, quota, reserved)

    return check


async def create(certificate: Certificate) -> None:
    """Store a new certificate of the caller's (`Conflict` if the name is taken; `Refused` when
    the caller may not have it). Under the owner's lock: the quota is counted in the write's
    transaction, which watches only the new certificate's own keys, so two creates of one
    owner must not count at once."""
    async with owner_serialized(tenant_of(caller())):
        await cascades.create_certificate(storage(), certificate, _claim_check())


async def order(certificate: Certificate) -> None:
    """Store a new certificate and have the manager issue it (`Conflict` if the name is taken;
    `Refused` when the caller may not have it; 429 `ApiError` past an owner's budget: see
    `_count_acme_order`)."""
    issuer = manager()
    await _count_acme_order(certificate)
    await create(certificate)
    issuer.request(certificate.cert_name)


async def _accept(name: str, domains: list[str], options: AcmeOptions) -> tuple[Json, int]:
    check_name(caller(), name)
    email = acme_email(options.email)
    if email is None:
        raise ApiError(
            422,
            "validation_error",
            "no email for the ACME account: give one, set the token's cert_email, "
            "or set ADMIN_EMAIL",
            field="email",
        )
    await order(new_acme_certificate(name, domains, email, staging=options.staging))
    accepted = CertificateAccepted(
        cert_name=name,
        domains=domains,
        status=CertificateStatus.PENDING.value,
        status_url=status_url(name),
        message="issuance started; follow it at status_url",
    )
    return accepted.model_dump(mode="json"), 202


def _named(cert_name: str) -> str:
    """A certificate name from the path; anything that is not a name reads as a missing
    certificate. (It would otherwise read one of the index keys that share the `cert:` prefix,
    `cert:domain:{hostname}` among them: a probe of who holds a hostname.)"""
    if NAME.fullmatch(cert_name) is None:
        check_visible(caller(), None, cert_name)
    return cert_name


async def _certificate(name: str) -> Certificate:
    """The named certificate as it reads now (404 when there is none, or it is not the
    caller's to see)."""
    found = await storage().certificates.get(_named(name))
    return check_visible(caller(), found, name).as_of(utcnow())


SELF_SIGNED_PER_MINUTE = 10
"""Self-signed certificates one owner token may make per minute: each is a new key, CPU the
data plane shares, and deleting one frees its quota slot for the next (the admin: no limit)."""
ACME_ACCOUNT_EMAILS_PER_DAY = 3
"""New ACME account emails one owner token's orders may name per day (emails with no account
yet on the order's directory). Each is a new account, registered at the CA from the gateway's
address, and CAs bound registrations per address (Let's Encrypt: 10 per 3 hours): an owner
naming a new email in each order spent that for every owner and the admin."""

ORDERED_TOO_OFTEN = Answer(
    "429",
    f"An owner token ordered {ACME_ORDERS_PER_HOUR} this hour, or its orders named "
    f"{ACME_ACCOUNT_EMAILS_PER_DAY} new ACME account emails today, or all owner tokens "
    "together ordered ACME_OWNER_ORDERS_PER_HOUR this hour (see Retry-After)",
    model=ErrorBody,
)


@certificates.post("/")
@answers(ORDERED_TOO_OFTEN)
@requires_token()
@validate_request(CertificateCreate)
@document_response(CertificateAccepted, 202)
async def create_certificate(data: CertificateCreate) -> tuple[Json, int]:
    """Order a certificate for one domain (ACME HTTP-01, in the background)."""
    return await _accept(data.cert_name, data.domains, data)


@certificates.post("/multi-domain")
@answers(ORDERED_TOO_OFTEN)
@requires_token()
@validate_request(MultiDomainCertificateCreate)
@document_response(CertificateAccepted, 202)
async def create_multi_domain_certificate(data: MultiDomainCertificateCreate) -> tuple[Json, int]:
    """Order one certificate for up to 100 domains (ACME HTTP-01, in the background)."""
    return await _accept(data.cert_name, data.domains, data)


@certificates.post("/self-signed")
@answers(
    Answer(
        "429",
        f"An owner token made {SELF_SIGNED_PER_MINUTE} this minute (see Retry-After)",
        model=ErrorBody,
    )
)
@requires_token()
@validate_request(SelfSignedCertificateCreate)
async def create_self_signed_certificate(data: SelfSignedCertificateCreate) -> tuple[Json, int]:
    """Make a self-signed certificate now (SELF_SIGNED_CN, SELF_SIGNED_DAYS), for local use."""
    check_name(caller(), data.cert_name)
    await _count_self_signed()
    pending = Certificate(
        cert_name=data.cert_name, domains=data.domains, self_signed=True, **ownership()
    )
    await create(pending)
    manager = app_state(current_app).certificates
    if manager is not None:  # (its threads: CERT_GEN_MAX_WORKERS at once)
        issued = await manager.self_signed(data.domains)
    else:
        issued = await self_signed_for(_settings(), data.domains)
    stored = await cascades.store_issued(storage(), pending, issued.fields())
    return without(stored, SECRET_FIELDS), 201


async def _count_self_signed() -> None:
    """429 with Retry-After when the caller, an owner, made SELF_SIGNED_PER_MINUTE already."""
    who = caller()
    if not who.is_admin:
        counted = await storage().certificates.count_self_signed(who.token_hash, 60_000)
        _within(counted, SELF_SIGNED_PER_MINUTE, "self-signed certificates per minute")


async def _count_acme_order(certificate: Certificate) -> None:
    """429 with Retry-After when the caller, an owner, ordered ACME_ORDERS_PER_HOUR already, or
    this order names a new ACME account email past ACME_ACCOUNT_EMAILS_PER_DAY today, or all
    owners together ordered ACME_OWNER_ORDERS_PER_HOUR this hour. The gateway-wide count comes
    last and counts only an order it lets through: an owner refused by its own budgets spends
    nothing of the others'. The admin's orders are never counted: the owners' cap keeps the
    rest of the CA's budget for them. (The retries and renewals of an owner's certificate are
    counted in the same windows by the manager: `certificates.orders`.)"""
    who = caller()
    if who.is_admin or certificate.self_signed:
        return
    certificates = storage().certificates
    counted = await certificates.count_acme_order(who.token_hash, HOUR_MS)
    _within(counted, ACME_ORDERS_PER_HOUR, "ACME certificate orders per hour")
    directory, email = str(certificate.acme_directory_url), (certificate.email or "").lower()
    if await AcmeAccountRepository(storage().redis).get(directory, email) is None:
        left_ms = await certificates.claim_acme_email(
            who.token_hash, email, ACME_ACCOUNT_EMAILS_PER_DAY, 86_400_000
        )
        if left_ms:
            _too_many(ACME_ACCOUNT_EMAILS_PER_DAY, "new ACME account emails per day", left_ms)
    limit = _settings().acme_owner_orders_per_hour
    together = await certificates.count_owner_acme_order(limit, HOUR_MS)
    if not together.count:
        _too_many(
            limit,
            "ACME certificate orders per hour",
            together.remaining_ms,
            who="all owner tokens together (ACME_OWNER_ORDERS_PER_HOUR)",
        )


def _within(counted: WindowCount, limit: int, what: str) -> None:
    if counted.count > limit:
        _too_many(limit, what, counted.remaining_ms)


def _too_many(limit: int, what: str, remaining_ms: int, *, who: str = "one token") -> NoReturn:
    retry_after = max(1, math.ceil(remaining_ms / 1000))
    raise ApiError(
        429,
        "too_many_requests",
        f"at most {limit} {what} for {who}; try again in {retry_after} s",
        headers={"Retry-After": str(retry_after)},
    )


@certificates.get("/")
@requires_token()
async def list_certificates() -> list[Json]:
    """Every certificate the caller may see (the admin: all), by name, without its PEM data."""
    found = visible(caller(), await storage().certificates.all())
    now = utcnow()
    return [without(c.as_of(now), PEM_FIELDS) for c in sorted(found, key=lambda c: c.cert_name)]


@certificates.get("/<cert_name>")
@requires_token()
async def get_certificate(cert_name: str) -> Json:
    """One certificate with its chain (`fullchain_pem`); never its private key."""
    return without(await _certificate(cert_name), SECRET_FIELDS)


@certificates.get("/<cert_name>/status")
@requires_token()
@document_response(CertificateProgress)
async def get_generation_status(cert_name: str) -> Json:
    """What the latest issuance is doing (or did), with the certificate's own state."""
    certificate = await _certificate(cert_name)
    latest = await storage().certificates.status(cert_name)
    return CertificateProgress.of(certificate, latest).model_dump(mode="json")


def _renewing(certificate: Certificate) -> Certificate:
    if certificate.status is CertificateStatus.PENDING:
        return certificate
    return certificate.model_copy(update={"status": CertificateStatus.RENEWING})


@certificates.post("/<cert_name>/renew")
@requires_token()
async def renew_certificate(cert_name: str) -> tuple[Json, int]:
    """Issue the certificate again now (the admin: any time; its owner: when it is due, as
    the renewal loop would); it keeps serving until then."""
    issuer = manager()
    who = caller()

    threshold = timedelta(days=_settings().renewal_threshold_days)

    def renewing_if_allowed(certificate: Certificate) -> Certificate:
        visible = check_visible(who, certificate, cert_name)
        check_renew(who, visible, due(visible, utcnow(), threshold))
        return _renewing(visible)

    renewing = await storage().certificates.modify(_named(cert_name), renewing_if_allowed)
    issuer.request(cert_name)
    accepted = CertificateAccepted(
        cert_name=cert_name,
        domains=renewing.domains,
        status=renewing.status.value,
        status_url=status_url(cert_name),
        message="renewal started; follow it at status_url",
    )
    return accepted.model_dump(mode="json"), 202


@certificates.delete("/<cert_name>")
@requires_token()
@document_response(CertificateDeleted)
async def remove_certificate(cert_name: str) -> Json:
    """Delete a certificate (owner or admin); the proxies it served fall back to HTTP."""
    who = caller()
    deleted = await cascades.delete_certificate(
        storage(), _named(cert_name), lambda certificate: check_visible(who, certificate, cert_name)
    )
    return deleted.model_dump(mode="json")
