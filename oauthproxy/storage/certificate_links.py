"""Writes that join a certificate and the proxies it serves, each one transaction.

- An issued certificate: its record, every domain pointing at it, one `certificate_ready` event
  per domain, and the proxies of those domains that serve HTTPS without naming a certificate get
  its name. Only proxies of the certificate's own owner are linked, and a domain whose proxy
  belongs to another owner keeps its mapping (see `tenancy.certificates`).
- A deleted certificate (through its endpoint, with its proxy, or with the token that owns it):
  its record and status gone, each domain it held handed to another certificate that covers it
  (if any), and one `proxy_updated` per proxy it served (a proxy that named it names none any
  more), so those instances fall back to HTTP (or to the certificate their domain went to).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from oauthproxy.models.certificates import Certificate, CertificateDeleted, CertificateStatus
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, Redis, dump, load_many
from oauthproxy.storage.certificates import CertificateRepository
from oauthproxy.storage.events import STREAM_MAX_LENGTH, event_fields, queue_event
from oauthproxy.storage.proxies import ProxyRepository, event_data
from oauthproxy.tenancy.certificates import links, may_take_domain, serves

if TYPE_CHECKING:
    from oauthproxy.storage import Storage

CertificateCheck = Callable[[Certificate], object]
"""Raises when the caller may not delete this certificate."""

# A domain that still points at the deleted certificate (ARGV[1]) goes to the first of the other
# certificates covering it (KEYS[2..], named in ARGV[2..]) that still exists; else it is unmapped.
_HAND_OVER_DOMAIN = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
for i = 2, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    redis.call('SET', KEYS[1], ARGV[i])
    return 1
  end
end
redis.call('DEL', KEYS[1])
return 1
"""

# A proxy the deleted certificate served, unless it is gone: stored as `released` (ARGV[2]) if it
# is still as read (ARGV[1]), then told with `proxy_updated` (ARGV[4..]) on the stream KEYS[2].
# A proxy changed meanwhile keeps that change and is told all the same: the certificate is gone.
_RELEASE_PROXY = """
local current = redis.call('GET', KEYS[1])
if not current then return 0 end
if current == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) end
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '*', unpack(ARGV, 4))
return 1
"""

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
        proxies = {p.hostname: p for p in await _proxies(storage, current.domains)}
        for proxy in proxies.values():
            if proxy.enable_https and proxy.cert_name is None and links(updated, proxy):
                linked = proxy.model_copy(update={"cert_name": name})
                pipe.set(keys.proxy(proxy.hostname), dump(linked))
        for domain in current.domains:
            if may_take_domain(updated, proxies.get(domain)):
                pipe.set(keys.cert_domain(domain), name)
                queue_event(pipe, EventType.CERTIFICATE_READY, domain, cert_name=name)
        return updated

    return await storage.certificates.edit(name, write, companions)


def _served_by(certificate: Certificate, proxies: list[ProxyTarget]) -> list[str]:
    return [proxy.hostname for proxy in proxies if serves(certificate, proxy)]


def _successors(others: list[Certificate], domain: str) -> list[str]:
    """The other certificates for `domain`, issued ones first."""
    covering = [c for c in others if domain in c.domains]
    return [c.cert_name for c in sorted(covering, key=lambda c: not c.issued)]


async def queue_delete(redis: Redis, pipe: Pipeline, certificate: Certificate) -> list[str]:
    """Queue the certificate's deletion on the transaction `pipe`: its record and status, its
    domains handed on, the proxies it served told. Returns the hostnames of those proxies.

    The scripts run when the transaction does, after what it queued before them. So a proxy the
    same transaction deletes (with the token that owned both, say) is left deleted, and a domain
    is handed only to a certificate that still exists then."""
    name = certificate.cert_name
    others = [c for c in await CertificateRepository(redis).all() if c.cert_name != name]
    served = [p for p in await ProxyRepository(redis).all() if serves(certificate, p)]
    pipe.delete([keys.cert(name), keys.cert_status(name)])
    hand_over = redis.register_script(_HAND_OVER_DOMAIN)
    for domain in certificate.domains:
        successors = _successors(others, domain)
        hand_over(
            keys=[keys.cert_domain(domain), *map(keys.cert, successors)],
            args=[name, *successors],
            client=pipe,
        )
    release = redis.register_script(_RELEASE_PROXY)
    for proxy in served:
        released = proxy.model_copy(update={"cert_name": None})
        fields = event_fields(EventType.PROXY_UPDATED, proxy.hostname, **event_data(released))
        event = [part for field in fields.items() for part in field]
        release(
            keys=[keys.proxy(proxy.hostname), keys.EVENTS_WORKFLOW],
            args=[dump(proxy), dump(released), STREAM_MAX_LENGTH, *event],
            client=pipe,
        )
    return [proxy.hostname for proxy in served]


async def delete_certificate(
    storage: Storage, name: str, check: CertificateCheck
) -> CertificateDeleted:
    """Delete the certificate (`check` may refuse) and let the proxies it served know."""
    proxies = await storage.proxies.all()

    def companions(current: Certificate) -> list[str]:
        watched = CertificateRepository.watched_keys(current)
        return watched + _proxy_keys(_served_by(current, proxies))

    async def write(pipe: Pipeline, current: Certificate) -> CertificateDeleted:
        check(current)
        told = await storage.certificates.queue_delete(pipe, current)
        return CertificateDeleted(cert_name=name, proxies_updated=told)

    return await storage.certificates.edit(name, write, companions)
