"""One ACME issuance, step by step: a new key and CSR, the order, the HTTP-01 challenges
published in Redis (any replica's HTTP listener answers them), polling the authorizations with
the `ACME_POLL_*` settings, then finalizing. Blocking steps run in threads (`acme.blocking`)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import trio
from acme import messages

from oauthproxy.certificates import acme
from oauthproxy.certificates.accounts import sign_in
from oauthproxy.certificates.pem import (
    Issued,
    csr_pem,
    describe,
    new_certificate_key,
    private_key_pem,
)
from oauthproxy.models.certificates import Certificate, IssuanceStage
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage
from oauthproxy.storage.acme_accounts import AcmeAccountRepository
from oauthproxy.storage.locks import CLEANUP_ERRORS

CLEANUP_TIMEOUT_SECONDS = 5.0
NETWORK_ALLOWANCE_SECONDS = 120.0
"""Time for the requests themselves, on top of the polling budget."""
MIN_FINALIZE_SECONDS = 30.0

Report = Callable[[IssuanceStage, str], Awaitable[None]]
"""Called as the issuance moves from one stage to the next."""


@dataclass(frozen=True)
class Polling:
    initial_wait: float
    interval: float
    max_attempts: int

    @classmethod
    def of(cls, settings: Settings) -> Polling:
        return cls(
            settings.acme_poll_initial_wait,
            settings.acme_poll_interval_seconds,
            settings.acme_poll_max_attempts,
        )

    @property
    def finalize_seconds(self) -> float:
        return max(self.interval * self.max_attempts, MIN_FINALIZE_SECONDS)

    @property
    def budget_seconds(self) -> float:
        """The longest one issuance may take: waiting, polling, finalizing, the requests."""
        polling = self.initial_wait + self.interval * self.max_attempts
        return polling + self.finalize_seconds + NETWORK_ALLOWANCE_SECONDS


@dataclass(frozen=True)
class AcmeIssuer:
    settings: Settings
    storage: Storage
    accounts: AcmeAccountRepository

    @property
    def ca_bundle(self) -> str | None:
        bundle = self.settings.acme_ca_bundle
        return str(bundle) if bundle else None

    async def issue(self, certificate: Certificate, report: Report) -> Issued:
        directory = certificate.acme_directory_url
        if not directory or not certificate.email:
            raise acme.AcmeError("the certificate has no ACME directory or email to order with")
        settings = self.settings
        key = await trio.to_thread.run_sync(
            new_certificate_key, settings.certificate_key_type, settings.rsa_key_size
        )
        csr = await trio.to_thread.run_sync(csr_pem, key, certificate.domains)
        await report(IssuanceStage.ORDERING, f"ordering from {directory}")
        session = await sign_in(self.accounts, directory, certificate.email, self.ca_bundle)
        order = await acme.blocking(acme.new_order, session, csr)
        await self._validate(session, order, report)
        await report(IssuanceStage.FINALIZING, "all domains validated; finalizing the order")
        polling = Polling.of(self.settings)
        chain = await acme.blocking(acme.finalize, session, order, polling.finalize_seconds)
        return await trio.to_thread.run_sync(describe, chain, private_key_pem(key))

    async def _validate(
        self, session: acme.AcmeSession, order: messages.OrderResource, report: Report
    ) -> None:
        pending = acme.pending_challenges(session, order)
        await report(IssuanceStage.VALIDATING, f"answering {len(pending)} http-01 challenge(s)")
        async with self._published(pending):
            for challenge in pending:
                await acme.blocking(acme.answer, session, challenge)
            await trio.sleep(self.settings.acme_poll_initial_wait)
            for authorization in order.authorizations:
                await self._wait_valid(session, authorization)

    @asynccontextmanager
    async def _published(self, pending: list[acme.Http01]) -> AsyncIterator[None]:
        """The key authorizations in Redis while the CA validates; removed afterwards."""
        for challenge in pending:
            await self.storage.challenges.put(challenge.token, challenge.validation)
        try:
            yield
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(CLEANUP_TIMEOUT_SECONDS):
                for challenge in pending:
                    with contextlib.suppress(*CLEANUP_ERRORS):  # they expire on their own
                        await self.storage.challenges.delete(challenge.token)

    async def _wait_valid(
        self, session: acme.AcmeSession, authorization: messages.AuthorizationResource
    ) -> None:
        polling = Polling.of(self.settings)
        for _attempt in range(polling.max_attempts):
            current = await acme.blocking(acme.authorization_state, session, authorization)
            if acme.is_valid(current):
                return
            if not acme.is_waiting(current):
                raise acme.AcmeError(acme.authorization_failure(current))
            await trio.sleep(polling.interval)
        domain = acme.domain_of(authorization)
        raise acme.AcmeError(
            f"validation of {domain} did not finish after {polling.max_attempts} polls"
        )
