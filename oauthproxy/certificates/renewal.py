"""Renewal: every `RENEWAL_CHECK_INTERVAL`, hand the manager each certificate that needs work.

That is a certificate within `RENEWAL_THRESHOLD_DAYS` of expiry, one waiting for its first
issuance or a manual renewal (left behind by a replica that stopped), and one whose last attempt
failed once its retry time has come. Retries back off exponentially: the first after
min(RETRY_BASE_SECONDS, RENEWAL_CHECK_INTERVAL), doubling with each failure, never later than
RENEWAL_CHECK_INTERVAL. The loop wakes early for a retry that falls due before the next check.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from typing import Protocol

import trio

from oauthproxy.errors import StorageUnavailable
from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.models.common import utcnow
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage

log = logging.getLogger(__name__)

RETRY_BASE_SECONDS = 300.0
STORAGE_PAUSE_SECONDS = 5.0
WAITING = (CertificateStatus.PENDING, CertificateStatus.RENEWING)


def due(certificate: Certificate, now: datetime, threshold: timedelta) -> bool:
    """Whether `certificate` needs an issuance now."""
    if certificate.status in WAITING:
        return True
    if certificate.status is CertificateStatus.ERROR:
        retry_at = certificate.next_attempt_at
        return retry_at is None or retry_at <= now
    expires_at = certificate.expires_at
    return expires_at is None or expires_at - now <= threshold


def retry_delay(failures: int, check_interval: float) -> timedelta:
    """How long to wait after the `failures`-th failure in a row."""
    base = min(RETRY_BASE_SECONDS, check_interval)
    ceiling = max(base, check_interval)
    exponent = min(max(failures - 1, 0), 32)
    return timedelta(seconds=min(base * 2**exponent, ceiling))


def seconds_until_next_check(
    certificates: Iterable[Certificate], now: datetime, check_interval: float
) -> float:
    """The regular interval, or less when a failed certificate's retry comes sooner. Retries
    already due were submitted by this check and are not waited for again."""
    retries = [
        (c.next_attempt_at - now).total_seconds()
        for c in certificates
        if c.status is CertificateStatus.ERROR
        and c.next_attempt_at is not None
        and c.next_attempt_at > now
    ]
    return min([check_interval, *retries])


class Submitter(Protocol):
    def submit(self, name: str) -> bool: ...

    async def wait_for_reschedule(self, seconds: float) -> None: ...


async def check_once(manager: Submitter, storage: Storage, settings: Settings) -> list[Certificate]:
    """Submit every certificate that is due; all of them, for scheduling the next check."""
    certificates = await storage.certificates.all()
    now = utcnow()
    threshold = timedelta(days=settings.renewal_threshold_days)
    for certificate in certificates:
        if due(certificate, now, threshold):
            manager.submit(certificate.cert_name)
    return certificates


Watch = Callable[[list[Certificate], datetime], Awaitable[float | None]]
"""Shown every certificate at each check; answers the seconds until the next one expires."""

EXPIRY_MARGIN_SECONDS = 1.0


async def serve_renewal(
    manager: Submitter,
    storage: Storage,
    settings: Settings,
    *,
    watch: Watch | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Check now, then again after each interval (or sooner, for a retry, or just after the
    next certificate expires, for `watch` to see it), forever."""
    task_status.started()
    while True:
        try:
            certificates = await check_once(manager, storage, settings)
        except StorageUnavailable as error:
            log.warning("renewal check skipped: %s", error)
            await trio.sleep(min(STORAGE_PAUSE_SECONDS, settings.renewal_check_interval))
            continue
        interval = settings.renewal_check_interval
        now = utcnow()
        wait = seconds_until_next_check(certificates, now, interval)
        until_expiry = await watch(certificates, now) if watch is not None else None
        if until_expiry is not None:
            wait = min(wait, until_expiry + EXPIRY_MARGIN_SECONDS)
        await manager.wait_for_reschedule(wait)
