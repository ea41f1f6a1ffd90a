"""Quotas: an owner token may hold up to its limit of each kind; the admin is not bounded."""

from __future__ import annotations

import pytest

from oauthproxy.tenancy.caller import Caller, Refused
from oauthproxy.tenancy.quotas import Quota, Quotas, check_quota

OWNER = Caller(token_hash="sha256:" + "a" * 64, is_admin=False)
ADMIN = Caller(token_hash="sha256:" + "0" * 64, is_admin=True)
QUOTAS = Quotas(limits={Quota.PROXIES: 2, Quota.ROUTES: 0, Quota.SERVICES: 5})


@pytest.mark.parametrize(
    ("caller", "quota", "owned", "refused"),
    [
        (OWNER, Quota.PROXIES, 0, False),
        (OWNER, Quota.PROXIES, 1, False),
        (OWNER, Quota.PROXIES, 2, True),
        (OWNER, Quota.PROXIES, 7, True),
        (OWNER, Quota.ROUTES, 0, True),
        (OWNER, Quota.SERVICES, 4, False),
        (OWNER, Quota.SERVICES, 5, True),
        (ADMIN, Quota.PROXIES, 100, False),
        (ADMIN, Quota.ROUTES, 1, False),
    ],
)
def test_quota(caller: Caller, quota: Quota, owned: int, refused: bool) -> None:
    if not refused:
        check_quota(caller, QUOTAS, quota, owned)
        return
    with pytest.raises(Refused) as caught:
        check_quota(caller, QUOTAS, quota, owned)
    assert (caught.value.status, caught.value.error) == (403, "quota_exceeded")
    assert caught.value.field == quota.value
    assert f"{quota.value}={QUOTAS.limit(quota)}" in caught.value.detail
