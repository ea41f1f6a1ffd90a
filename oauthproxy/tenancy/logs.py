"""Whose request log entries a token may read, and who may clear the log.

An entry belongs to the owner of the proxy whose hostname it names. The admin reads every entry
(those of unknown hostnames and of the gateway's own hostnames too); an owner token reads only
entries of hostnames it owns a proxy for, written since it made that proxy, so one tenant's
traffic (client IPs, users, paths) is never shown to another, not even to the next owner of a
hostname it gave up. A query an owner narrows to a hostname it does not own finds nothing
(no error: whether a hostname is served is not another owner's to learn). Clearing the log
deletes every tenant's entries: the admin's alone.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Protocol

from oauthproxy.tenancy.caller import Caller, forbidden


class HostRecord(Protocol):
    @property
    def hostname(self) -> str: ...

    @property
    def owner_token_hash(self) -> str | None: ...

    @property
    def created_at(self) -> datetime: ...


def readable_hosts(caller: Caller, proxies: Iterable[HostRecord]) -> dict[str, float] | None:
    """The hostnames whose entries the caller may read, each with the time (seconds since the
    epoch) its entries begin to be the caller's: its proxy's creation. A hostname is freed when
    its proxy or its owner's token is deleted, and then another owner may claim it; the log
    still holds the first owner's traffic, which is not the new owner's to read.
    None: every entry (the admin)."""
    if caller.is_admin:
        return None
    return {
        proxy.hostname: proxy.created_at.timestamp()
        for proxy in proxies
        if proxy.owner_token_hash == caller.token_hash
    }


def check_clear(caller: Caller) -> None:
    """Clearing the log is the admin's."""
    if not caller.is_admin:
        raise forbidden("only the admin token may clear the request log", field="Authorization")
