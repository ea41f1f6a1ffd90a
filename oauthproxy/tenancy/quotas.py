"""How many records one owner token may hold: bounded, so one owner cannot fill Redis or the
routing table for everyone. The admin token is not bounded."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from oauthproxy.tenancy.caller import Caller, Refused


class Quota(StrEnum):
    """A bounded kind of record, named as its setting is."""

    PROXIES = "TOKEN_MAX_PROXIES"
    ROUTES = "TOKEN_MAX_ROUTES"
    SERVICES = "TOKEN_MAX_SERVICES"
    PORTS = "TOKEN_MAX_PORTS"


@dataclass(frozen=True)
class Quotas:
    limits: dict[Quota, int]

    def limit(self, quota: Quota) -> int:
        return self.limits[quota]


def check_quota(caller: Caller, quotas: Quotas, quota: Quota, owned: int) -> None:
    """Refuse (403 `quota_exceeded`, naming the quota) one more record when the caller already
    owns `owned` and its quota allows no more; the admin passes."""
    if caller.is_admin:
        return
    limit = quotas.limit(quota)
    if owned >= limit:
        kind = quota.name.lower()
        raise Refused(
            403,
            "quota_exceeded",
            f"this token owns {owned} {kind}, the most {quota.value}={limit} allows; "
            f"delete one or ask the admin to raise {quota.value}",
            field=quota.value,
        )
