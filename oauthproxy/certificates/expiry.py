"""Certificate expiry as this replica last saw it: the times `/metrics` shows, and which
certificates have just gone past their not-after (logged once as `certificate.expired`).

Fed by the renewal loop (every certificate, at each check) and by each issuance; read by the
metrics collector at scrape time, from memory (no Redis). Pure apart from its own state.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from oauthproxy.models.certificates import Certificate


class ExpiryWatch:
    def __init__(self) -> None:
        self.times: dict[str, float] = {}
        """Certificate name → its expiry (seconds since the epoch), for those issued."""
        self._reported: dict[str, datetime] = {}
        """Certificate name → the expiry already reported as passed (a renewed certificate has
        another, and is reported again if that one passes too)."""

    def observe(self, certificates: Iterable[Certificate], now: datetime) -> list[Certificate]:
        """Take every stored certificate's expiry; the certificates past it that were not
        reported yet (each is returned once per expiry)."""
        seen = [certificate for certificate in certificates if certificate.expires_at]
        self.times = {c.cert_name: c.expires_at.timestamp() for c in seen if c.expires_at}
        self._reported = {
            name: expiry for name, expiry in self._reported.items() if name in self.times
        }
        expired = []
        for certificate in seen:
            expiry = certificate.expires_at
            if expiry is None or expiry >= now:
                continue
            if self._reported.get(certificate.cert_name) != expiry:
                self._reported[certificate.cert_name] = expiry
                expired.append(certificate)
        return expired

    def issued(self, name: str, expires_at: datetime) -> None:
        """A certificate was just issued (renewed): its new expiry counts from now on."""
        self.times[name] = expires_at.timestamp()

    def soonest(self, now: datetime) -> float | None:
        """Seconds until the next certificate expires (None: none will), so the renewal loop
        can wake then and report it."""
        ahead = [expiry - now.timestamp() for expiry in self.times.values()]
        future = [seconds for seconds in ahead if seconds > 0]
        return min(future) if future else None
