"""The certificate manager: issues certificates in the background, one task per certificate.

- At most `CERT_GEN_MAX_WORKERS` issuances run at once (a `trio.CapacityLimiter`); a certificate
  already being issued by this replica is not started twice.
- Each issuance holds the Redis lock `cert:lock:{name}`, and decides only once it holds it
  whether the certificate still needs issuing: two replicas never order the same certificate.
- Progress goes to `cert:status:{name}` (kept `CERT_STATUS_RETENTION_SECONDS`).
- Success stores the certificate and queues one `certificate_ready` per domain, atomically.
  Failure records the error on the certificate (`status=error`, `last_error`) and when it is
  retried; a certificate issued earlier keeps serving meanwhile.
- Every order for an owner's certificate that the API did not count already (a retry, a
  renewal) counts against the owner's hourly budget and the owners' gateway-wide one
  (`certificates.orders`); when one is full nothing is ordered, and the certificate's next
  attempt moves to when that window ends (`last_error` says why). The admin's never count.
"""

from __future__ import annotations

import contextlib
import functools
import logging
from datetime import datetime, timedelta

import trio

from oauthproxy.certificates.expiry import ExpiryWatch
from oauthproxy.certificates.issuer import AcmeIssuer, Polling, Report
from oauthproxy.certificates.orders import OrderRefused, count_owner_order
from oauthproxy.certificates.pem import Issued
from oauthproxy.certificates.renewal import due, retry_delay, serve_renewal
from oauthproxy.certificates.self_signed import self_signed_for
from oauthproxy.errors import NotFound, StorageUnavailable
from oauthproxy.logs.logger import RequestLogger
from oauthproxy.models.certificates import (
    Certificate,
    CertificateStatus,
    GenerationStatus,
    IssuanceStage,
)
from oauthproxy.models.common import utcnow
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.acme_accounts import AcmeAccountRepository
from oauthproxy.storage.cascades import store_issued
from oauthproxy.storage.locks import IssuanceLocks
from oauthproxy.tenancy.certificates import links

log = logging.getLogger(__name__)

LOCK_MARGIN_SECONDS = 60.0


def _failure_message(error: Exception) -> str:
    if isinstance(error, trio.TooSlowError):
        return "issuance took too long and was abandoned"
    return str(error) or type(error).__name__


class CertificateManager:
    def __init__(
        self,
        settings: Settings,
        storage: Storage,
        nursery: trio.Nursery,
        replica: str,
        requests: RequestLogger | None = None,
    ) -> None:
        self._settings = settings
        self._requests = requests
        """Where certificate events go (the request log); None: nowhere but this log."""
        self._replica = replica
        self._storage = storage
        self._nursery = nursery
        self._limiter = trio.CapacityLimiter(settings.cert_gen_max_workers)
        """Issuances at once (each holds a token for its whole run, ACME polling included)."""
        self._generating = trio.CapacityLimiter(settings.cert_gen_max_workers)
        """Self-signed certificates made at once (the key generation's threads), the API's too."""
        self._busy: set[str] = set()
        self._locks = IssuanceLocks(storage.redis)
        self._issuer = AcmeIssuer(settings, storage, AcmeAccountRepository(storage.redis))
        self._budget = Polling.of(settings).budget_seconds
        self._rescheduled = trio.Event()
        self._closed = False
        self.expiry = ExpiryWatch()
        """Every certificate's expiry as last seen (for `/metrics`)."""

    async def watch(self, certificates: list[Certificate], now: datetime) -> float | None:
        """The renewal loop's look at every certificate: note their expiry times, and log each
        that has just gone past its not-after (once); the seconds until the next expires."""
        for certificate in self.expiry.observe(certificates, now):
            message = f"expired at {certificate.expires_at:%Y-%m-%d %H:%M} UTC"
            log.warning("certificate %s: %s", certificate.cert_name, message)
            await self._event(certificate, "certificate.expired", 500, message)
        return self.expiry.soonest(now)

    def close(self) -> None:
        """Start no more issuances."""
        self._closed = True

    def submit(self, name: str, *, announce: bool = False) -> bool:
        """Issue `name` in the background if it needs it; False when this replica already is
        (or is shutting down). `announce`: first say in its status that it is queued."""
        if self._closed or name in self._busy:
            return False
        self._busy.add(name)
        self._nursery.start_soon(self._run, name, announce)
        return True

    def request(self, name: str) -> None:
        """`submit` for a caller who just asked for it: its status says it is queued."""
        self.submit(name, announce=True)

    async def wait_for_reschedule(self, seconds: float) -> None:
        """Sleep `seconds`, or less when a failure scheduled a retry meanwhile."""
        with trio.move_on_after(seconds):
            await self._rescheduled.wait()
        self._rescheduled = trio.Event()

    async def _run(self, name: str, announce: bool) -> None:
        try:
            if announce:
                await self._report(name, IssuanceStage.QUEUED, "waiting for a free worker")
            async with self._limiter:
                if await self._attempt(name):
                    await self._attempt(name)  # the one made under its name meanwhile
        except StorageUnavailable as error:
            log.warning("certificate %s: issuance interrupted: %s", name, error)
        finally:
            self._busy.discard(name)

    async def _attempt(self, name: str) -> bool:
        """Issue `name` if it is due; True when the certificate it issued was deleted meanwhile
        (a certificate made again under its name, which asked while this one ran, is not
        issued yet: this replica was busy with the name, and held its lock)."""
        async with self._locks.holding(name, self._budget + LOCK_MARGIN_SECONDS) as held:
            if not held:
                log.info("certificate %s: another replica is issuing it", name)
                return False
            certificate = await self._storage.certificates.get(name)
            threshold = self._settings.renewal_threshold_days
            if certificate is None or not due(certificate, utcnow(), _days(threshold)):
                return False
            if not await self._within_budget(certificate):
                return False
            return not await self._issue(certificate)

    async def _within_budget(self, certificate: Certificate) -> bool:
        """Count the order `certificate` is about to get against its owner's budgets; False
        (and its next attempt moved to when the full window ends) when one is full. Not
        counted: the admin's certificates, self-signed ones, and the first order of a new
        certificate (counted by the API that took it: `api.certificates._count_acme_order`)."""
        if certificate.self_signed or _first_order(certificate):
            return True
        owner = certificate.owner_token_hash
        if owner is None or await self._storage.tokens.is_admins(owner):
            return True
        limit = self._settings.acme_owner_orders_per_hour
        refused = await count_owner_order(self._storage.certificates, owner, limit)
        if refused is None:
            return True
        await self._defer(certificate, refused)
        return False

    async def _defer(self, certificate: Certificate, refused: OrderRefused) -> None:
        """Note on `certificate` that its order waits for its owner's budget, until when."""
        name = certificate.cert_name
        retry_at = utcnow() + timedelta(milliseconds=refused.remaining_ms)
        message = refused.message()
        previous = certificate.last_error
        if previous is not None and previous.startswith(DEFERRED_PREFIX):
            previous = previous.partition(LAST_FAILURE)[2] or None
        last_error = f"{message}{LAST_FAILURE}{previous}" if previous else message
        changes = {
            "status": CertificateStatus.ERROR,
            "last_error": last_error,
            "next_attempt_at": retry_at,
        }

        def deferred(current: Certificate) -> Certificate:
            if not current.is_record_of(certificate):  # deleted and made again meanwhile
                raise NotFound("certificate", name)
            return current.model_copy(update=changes)

        try:
            await self._storage.certificates.modify(name, deferred)
        except NotFound:
            return
        log.warning("certificate %s: %s", name, message)
        await self._event(certificate, "certificate.deferred", 429, message)
        await self._report(
            name, IssuanceStage.QUEUED, message, attempt=certificate.failures, retry_at=retry_at
        )
        self._rescheduled.set()

    async def _issue(self, certificate: Certificate) -> bool:
        """Issue `certificate`; False when it was deleted meanwhile (nothing is stored)."""
        name = certificate.cert_name
        attempt = certificate.failures + 1
        report: Report = functools.partial(self._report, name, attempt=attempt)
        renewal = certificate.fullchain_pem is not None
        await self._event(certificate, "certificate.ordered", 200, "renewal" if renewal else "new")
        try:
            with trio.fail_after(self._budget):
                issued = await self._obtain(certificate, report)
        except Exception as error:  # every failure is recorded; none may stop the manager
            log.warning("certificate %s: attempt %d failed: %s", name, attempt, error)
            failed = "certificate.renewal_failed" if renewal else "certificate.failed"
            await self._event(certificate, failed, 500, _failure_message(error))
            return await self._failed(certificate, _failure_message(error))
        try:
            await store_issued(self._storage, certificate, issued.fields())
        except NotFound:
            log.info("certificate %s was deleted while it was being issued", name)
            return False
        self.expiry.issued(name, issued.expires_at)
        message = f"issued, valid until {issued.expires_at:%Y-%m-%d %H:%M} UTC"
        log.info("certificate %s: %s", name, message)
        await self._event(certificate, "certificate.issued", 200, message)
        await report(IssuanceStage.COMPLETED, message)
        return True

    async def _event(self, certificate: Certificate, name: str, status: int, detail: str) -> None:
        """A certificate event in the request log, under the first of its domains whose proxy
        the certificate's owner owns (that owner sees it there), else the first no proxy serves
        (the admin finds it by that name), else under no hostname (the admin's alone). Never
        under a domain another owner proxies: that owner would read this one's certificate
        name, renewals and ACME errors in its own log."""
        if self._requests is None:
            return
        host = ""
        with contextlib.suppress(StorageUnavailable):  # the event still goes to the admin
            unproxied = []
            for domain in certificate.domains:
                proxy = await self._storage.proxies.get(domain)
                if proxy is None:
                    unproxied.append(domain)
                elif links(certificate, proxy):
                    host = domain
                    break
            else:
                host = unproxied[0] if unproxied else ""
        self._requests.event(
            name, status=status, host=host, path=certificate.cert_name, detail=detail[:200]
        )

    async def self_signed(self, domains: list[str]) -> Issued:
        """A self-signed certificate made now (the API's), in one of CERT_GEN_MAX_WORKERS
        threads: its key generation is CPU the data plane shares, so however many are asked
        for at once, only so many run (a renewal's too)."""
        return await self_signed_for(self._settings, domains, self._generating)

    async def _obtain(self, certificate: Certificate, report: Report) -> Issued:
        if certificate.self_signed:
            return await self.self_signed(certificate.domains)
        return await self._issuer.issue(certificate, report)

    async def _failed(self, certificate: Certificate, message: str) -> bool:
        """Record the failure and schedule a retry; False when it was deleted meanwhile."""
        failures = certificate.failures + 1
        retry_at = utcnow() + retry_delay(failures, self._settings.renewal_check_interval)
        changes = {
            "status": CertificateStatus.ERROR,
            "last_error": message,
            "failures": failures,
            "next_attempt_at": retry_at,
        }

        def failed(current: Certificate) -> Certificate:
            if not current.is_record_of(certificate):  # deleted and made again meanwhile
                raise NotFound("certificate", certificate.cert_name)
            return current.model_copy(update=changes)

        try:
            await self._storage.certificates.modify(certificate.cert_name, failed)
        except NotFound:
            return False
        name = certificate.cert_name
        await self._report(name, IssuanceStage.FAILED, message, attempt=failures, retry_at=retry_at)
        self._rescheduled.set()
        return True

    async def _report(
        self,
        name: str,
        stage: IssuanceStage,
        message: str,
        *,
        attempt: int = 0,
        retry_at: datetime | None = None,
    ) -> None:
        status = GenerationStatus(
            cert_name=name,
            status=stage.value,
            message=message,
            attempt=attempt,
            retry_at=retry_at,
            replica=self._replica,
        )
        await self._storage.certificates.set_status(
            status, self._settings.cert_status_retention_seconds
        )


DEFERRED_PREFIX = "not ordered:"
LAST_FAILURE = "; the last attempt failed: "


def _first_order(certificate: Certificate) -> bool:
    """Whether `certificate`'s next order is its first: never issued, never failed."""
    return certificate.failures == 0 and certificate.fullchain_pem is None


def _days(days: int) -> timedelta:
    return timedelta(days=days)


async def serve_certificate_manager(
    settings: Settings,
    storage: Storage,
    replica: str,
    shutdown: trio.Event,
    *,
    requests: RequestLogger | None = None,
    task_status: trio.TaskStatus[CertificateManager] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the manager and its renewal loop; started with the manager, for the API to use.

    On `shutdown` the renewal loop stops and no new issuance starts; those under way may finish
    (the caller's deadline bounds them; one cut short is picked up again by the next start)."""
    async with trio.open_nursery() as nursery:
        manager = CertificateManager(settings, storage, nursery, replica, requests)
        async with trio.open_nursery() as renewal:
            await renewal.start(
                functools.partial(serve_renewal, watch=manager.watch), manager, storage, settings
            )
            task_status.started(manager)
            await shutdown.wait()
            manager.close()
            renewal.cancel_scope.cancel()
