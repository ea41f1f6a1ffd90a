"""The renewal loop's schedule, in exact virtual seconds on trio's autojump clock, reading real
Redis.

`serve_renewal` hands due certificates to a `Submitter` and then asks it to wait; the test's
`Schedule` is that Submitter (the seam the loop was given for it): it records what was submitted
and each wait, and lets a wait begin only when the test says so. So while the loop talks to Redis
the test is blocked on a channel and no deadline is armed: the clock cannot jump during real I/O,
and each check happens at exactly the virtual second the loop chose.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import pytest
import trio
import trio.testing

from oauthproxy.certificates.renewal import serve_renewal
from oauthproxy.models.certificates import Certificate, CertificateStatus
from oauthproxy.models.common import utcnow
from oauthproxy.settings import Settings
from oauthproxy.storage import Storage

INTERVAL = 3600.0


@dataclass
class Wait:
    """One wait the loop asked for: when, how long, and what it had submitted since the last."""

    at: float
    seconds: float
    submitted: list[str]
    begin: trio.Event


class Schedule:
    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.send, self.waits = trio.open_memory_channel[Wait](0)

    def submit(self, name: str) -> bool:
        self.submitted.append(name)
        return True

    async def wait_for_reschedule(self, seconds: float) -> None:
        wait = Wait(trio.current_time(), seconds, sorted(self.submitted), trio.Event())
        self.submitted = []
        await self.send.send(wait)
        await wait.begin.wait()
        await trio.sleep(seconds)


def certificate(name: str, status: CertificateStatus, **fields: object) -> Certificate:
    return Certificate.model_validate(
        {"cert_name": name, "domains": [f"{name}.example.com"], "status": status, **fields}
    )


def active(name: str, expires_in_days: int) -> Certificate:
    expires_at = utcnow() + timedelta(days=expires_in_days)
    return certificate(name, CertificateStatus.ACTIVE, expires_at=expires_at)


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    settings: Settings = make_settings(renewal_check_interval=INTERVAL, renewal_threshold_days=30)
    return settings


@asynccontextmanager
async def renewing(storage: Storage, settings: Settings) -> AsyncIterator[Schedule]:
    """The renewal loop, running until the block ends, on what Redis holds now."""
    schedule = Schedule()
    async with trio.open_nursery() as nursery:
        await nursery.start(serve_renewal, schedule, storage, settings)
        yield schedule
        nursery.cancel_scope.cancel()


async def test_checks_at_once_then_every_interval_submitting_what_is_due(
    autojump_clock: trio.testing.MockClock, storage: Storage, settings: Settings
) -> None:
    await storage.certificates.put(active("fresh", 80))
    await storage.certificates.put(certificate("ordered", CertificateStatus.PENDING))
    await storage.certificates.put(certificate("failed", CertificateStatus.ERROR))
    started = trio.current_time()
    seen = []
    async with renewing(storage, settings) as schedule:
        async for wait in schedule.waits:
            seen.append((wait.at - started, wait.seconds, wait.submitted))
            if len(seen) == 3:
                break
            if len(seen) == 1:  # the first issuance succeeded meanwhile; another comes due
                await storage.certificates.put(active("ordered", 80))
                await storage.certificates.put(active("fresh", 29))
            wait.begin.set()
    assert seen == [
        (0.0, INTERVAL, ["failed", "ordered"]),
        (INTERVAL, INTERVAL, ["failed", "fresh"]),
        (2 * INTERVAL, INTERVAL, ["failed", "fresh"]),
    ]


async def test_with_nothing_stored_it_only_waits_the_interval(
    autojump_clock: trio.testing.MockClock, storage: Storage, settings: Settings
) -> None:
    started = trio.current_time()
    seen = []
    async with renewing(storage, settings) as schedule:
        async for wait in schedule.waits:
            seen.append((wait.at - started, wait.seconds, wait.submitted))
            if len(seen) == 4:
                break
            wait.begin.set()
    assert seen == [(n * INTERVAL, INTERVAL, []) for n in range(4)]
