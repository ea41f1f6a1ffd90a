"""Writes that join a certificate and the proxies it serves, each one transaction.

- An issued certificate: its record, every domain pointing at it, one `certificate_ready` event
  per domain, and the proxies of those domains that serve HTTPS without naming a certificate get
  its name.
- A deleted certificate: its record and status gone, each domain it held handed to another
  certificate that covers it (if any), and one `proxy_updated` per proxy it served (a proxy that
  named it names none any more), so those instances fall back to HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oauthproxy.models.certificates import Certificate, CertificateDeleted, CertificateStatus
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, dump, load_many
from oauthproxy.storage.certificates import CertificateRepository
from oauthproxy.storage.events import queue_event
from oauthproxy.storage.proxies import event_data

if TYPE_CHECKING:
    from oauthproxy.storage import Storage

CertificateCheck = Callable[[Certificate], object]
"""Raises when the caller may not delete this certificate."""

SUCCESS_RESETS: dict[str, Any] = {
    "status": CertificateStatus.ACTIVE,
    "last_error": None,
    "failures": 0,
    "next_attempt_at": None,
}


def _proxy_keys(hostnames: list[str]) -> list[str]:
    return [keys.proxy(hostname) for hostname in hostnames]


async def _proxies(storage: Storage, hostnames: list[str]) -> list[ProxyTarget]:
    return await load_many(storage.redis, ProxyTarget, _proxy_keys(hostnames))


async def store_issued(storage: Storage, name: str, issued: dict[str, Any]) -> Certificate:
    """Make the certificate active with the `issued` fields and announce it (`NotFound` when it
    was deleted meanwhile: nothing is written then)."""

    def companions(current: Certificate) -> list[str]:
        return _proxy_keys(current.domains)

    async def write(pipe: Pipeline, current: Certificate) -> Certificate:
        updated = current.model_copy(update={**issued, **SUCCESS_RESETS})
        pipe.set(keys.cert(name), dump(updated))
        for proxy in await _proxies(storage, current.domains):
            if proxy.enable_https and proxy.cert_name is None:
                linked = proxy.model_copy(update={"cert_name": name})
                pipe.set(keys.proxy(proxy.hostname), dump(linked))
        for domain in current.domains:
            pipe.set(keys.cert_domain(domain), name)
            queue_event(pipe, EventType.CERTIFICATE_READY, domain, cert_name=name)
        return updated

    return await storage.certificates.edit(name, write, companions)


def _serves(certificate: Certificate, proxy: ProxyTarget) -> bool:
    """Whether the proxy names the certificate, or names none and is one of its domains."""
    if proxy.cert_name is None:
        return proxy.hostname in certificate.domains
    return proxy.cert_name == certificate.cert_name


def _served_by(certificate: Certificate, proxies: list[ProxyTarget]) -> list[str]:
    return [proxy.hostname for proxy in proxies if _serves(certificate, proxy)]


def _successor(others: list[Certificate], domain: str) -> Certificate | None:
    """Another certificate for `domain`, an issued one first."""
    covering = [c for c in others if domain in c.domains]
    return next(iter(sorted(covering, key=lambda c: not c.issued)), None)


async def delete_certificate(
    storage: Storage, name: str, check: CertificateCheck
) -> CertificateDeleted:
    """Delete the certificate (`check` may refuse) and let the proxies it served know."""
    proxies = await storage.proxies.all()
    others = [c for c in await storage.certificates.all() if c.cert_name != name]

    def companions(current: Certificate) -> list[str]:
        watched = CertificateRepository.watched_keys(current)
        return watched + _proxy_keys(_served_by(current, proxies))

    async def write(pipe: Pipeline, current: Certificate) -> CertificateDeleted:
        check(current)
        held = await storage.certificates.domains_held(current)
        await storage.certificates.queue_delete(pipe, current)
        for domain in held:
            successor = _successor(others, domain)
            if successor is not None:
                pipe.set(keys.cert_domain(domain), successor.cert_name)
        fresh = await _proxies(storage, _served_by(current, proxies))
        served = [proxy for proxy in fresh if _serves(current, proxy)]
        for proxy in served:
            if proxy.cert_name == name:
                proxy = proxy.model_copy(update={"cert_name": None})
                pipe.set(keys.proxy(proxy.hostname), dump(proxy))
            queue_event(pipe, EventType.PROXY_UPDATED, proxy.hostname, **event_data(proxy))
        return CertificateDeleted(cert_name=name, proxies_updated=[p.hostname for p in served])

    return await storage.certificates.edit(name, write, companions)
