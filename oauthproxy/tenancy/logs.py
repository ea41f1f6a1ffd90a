"""Whose request log entries a token may read, and who may clear the log.

An entry belongs to the owner of the proxy whose hostname it names. The admin reads every entry
(those of unknown hostnames and of the gateway's own hostnames too); an owner token reads only
entries of hostnames it owns a proxy for, so one tenant's traffic (client IPs, users, paths) is
never shown to another. A query an owner narrows to a hostname it does not own finds nothing
(no error: whether a hostname is served is not another owner's to learn). Clearing the log
deletes every tenant's entries: the admin's alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from oauthproxy.tenancy.caller import Caller, forbidden


class HostRecord(Protocol):
    @property
    def hostname(self) -> str: ...

    @property
    def owner_token_hash(self) -> str | None: ...


def readable_hosts(caller: Caller, proxies: Iterable[HostRecord]) -> frozenset[str] | None:
    """The hostnames whose entries the caller may read; None: every hostname (the admin)."""
    if caller.is_admin:
        return None
    return frozenset(
        proxy.hostname for proxy in proxies if proxy.owner_token_hash == caller.token_hash
    )


def check_clear(caller: Caller) -> None:
    """Clearing the log is the admin's."""
    if not caller.is_admin:
        raise forbidden("only the admin token may clear the request log", field="Authorization")
