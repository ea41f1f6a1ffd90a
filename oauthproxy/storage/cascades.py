"""Every rule that joins two kinds of record, above the per-entity repositories (which know
nothing of each other). Each write is one transaction with the events it causes.

- A new certificate: stored only if its owner may claim its names (`tenancy.certificates`),
  judged on what is stored when it is written.
- An issued certificate: its record, its domains pointing at it, one `certificate_ready` event
  per domain, and its owner's proxies of those domains that serve HTTPS without naming a
  certificate get its name. Only proxies of the certificate's own owner are linked, and a domain
  whose proxy belongs to another owner keeps its mapping (`tenancy.certificates`).
- A deleted certificate (through its endpoint, with its proxy, with the token that owns it, or
  as an orphan): its record and status gone, each domain it held handed to another certificate
  that covers it (if any), and one `proxy_updated` per proxy it served (a proxy that named it
  names none any more), so those instances fall back to HTTP (or to the certificate their domain
  went to).
- A deleted proxy, with its certificate when asked.
- A deleted token, with everything it owns (`Holdings`); the orphan sweep deletes what an owner
  left behind the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coredis.exceptions import WatchError

from oauthproxy.errors import NotFound
from oauthproxy.models.certificates import Certificate, CertificateDeleted, CertificateStatus
from oauthproxy.models.events import EventType
from oauthproxy.models.proxies import ProxyDeleted, ProxyTarget
from oauthproxy.models.routes import Route
from oauthproxy.models.services import DockerService, ExternalService
from oauthproxy.models.tokens import OwnedResources
from oauthproxy.storage import keys
from oauthproxy.storage.base import (
    Pipeline,
    atomically,
    dump,
    load_many,
    retrying_conflicts,
    translated,
)
from oauthproxy.storage.certificates import CertificateRepository
from oauthproxy.storage.editing import anyone
from oauthproxy.storage.events import queue_event
from oauthproxy.storage.proxies import ProxyCheck, ProxyRepository
from oauthproxy.storage.routes import RouteRepository
from oauthproxy.storage.services import DockerServiceRepository, ExternalServiceRepository
from oauthproxy.tenancy.certificates import (
    NameClaims,
    links,
    may_take_domain,
    name_claims,
    serves,
)

if TYPE_CHECKING:
    from oauthproxy.storage import Storage

CertificateCheck = Callable[[Certificate], object]
"""Raises when the caller may not delete this certificate."""

CertificateChoice = Callable[[Certificate], bool]
"""Whether a deleted proxy's certificate goes with it."""

SUCCESS_RESETS: dict[str, Any] = {
    "status": CertificateStatus.ACTIVE,
    "last_error": None,
    "failures": 0,
    "next_attempt_at": None,
}


def _proxy_keys(hostnames: list[str]) -> list[str]:
    return [keys.proxy(hostname) for hostname in hostnames]


# --- certificates and the proxies they serve --------------------------------------------------


ClaimCheck = Callable[[list[NameClaims], int], object]
"""Raises when the new certificate's owner may not have it: given who holds each of its names
and how many certificates that owner has."""


@translated
async def create_certificate(
    storage: Storage, certificate: Certificate, check: ClaimCheck | None = None
) -> None:
    """Store a new certificate (`Conflict` when its name is taken) if `check` allows it, judged
    on what is stored when the write happens: the proxies and domain mappings of its names are
    watched, so a proxy created meanwhile makes the decision start over."""
    names = certificate.domains
    watched = [keys.cert(certificate.cert_name), *_proxy_keys(names)]
    watched += [keys.cert_domain(name) for name in names]

    async def write(pipe: Pipeline) -> None:
        if check is not None:
            stored = await storage.certificates.all()
            proxies = await load_many(storage.redis, ProxyTarget, _proxy_keys(names))
            owner = certificate.owner_token_hash
            owned = sum(1 for c in stored if c.owner_token_hash == owner)
            check(name_claims(names, proxies, stored), owned)
        await storage.certificates.queue_create(pipe, certificate)

    await atomically(storage.redis, watched, write)


@translated
async def store_issued(
    storage: Storage, ordered: Certificate, issued: dict[str, Any]
) -> Certificate:
    """Make the `ordered` certificate active with the `issued` fields and announce it
    (`NotFound` when it was deleted meanwhile, even if a certificate of its name was made
    again since: nothing is written then)."""
    name = ordered.cert_name

    def companions(current: Certificate) -> list[str]:
        return _proxy_keys(current.domains)

    async def write(pipe: Pipeline, current: Certificate) -> Certificate:
        if not current.is_record_of(ordered):
            raise NotFound("certificate", name)
        updated = current.model_copy(update={**issued, **SUCCESS_RESETS})
        pipe.set(keys.cert(name), dump(updated))
        found = await load_many(storage.redis, ProxyTarget, _proxy_keys(current.domains))
        proxies = {proxy.hostname: proxy for proxy in found}
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


def _served_by(certificate: Certificate, proxies: list[ProxyTarget]) -> list[ProxyTarget]:
    return [proxy for proxy in proxies if serves(certificate, proxy)]


@translated
async def queue_certificate_delete(
    storage: Storage, pipe: Pipeline, certificate: Certificate
) -> list[str]:
    """Queue the certificate's deletion on the transaction `pipe`: its record and status, its
    domains handed on, the proxies it served told. Returns the hostnames of those proxies.

    The scripts run when the transaction does, after what it queued before them. So a proxy the
    same transaction deletes (with the token that owned both, say) is left deleted, and a domain
    is handed only to a certificate that still exists then."""
    served = _served_by(certificate, await storage.proxies.all())
    await storage.certificates.queue_delete(pipe, certificate)
    for proxy in served:
        released = proxy.model_copy(update={"cert_name": None})
        storage.proxies.queue_replace_if_unchanged(pipe, proxy, released)
    return [proxy.hostname for proxy in served]


@translated
async def delete_certificate(
    storage: Storage, name: str, check: CertificateCheck = anyone
) -> CertificateDeleted:
    """Delete the certificate (`check` may refuse) and let the proxies it served know."""
    proxies = await storage.proxies.all()

    def companions(current: Certificate) -> list[str]:
        watched = CertificateRepository.watched_keys(current)
        return watched + [keys.proxy(p.hostname) for p in _served_by(current, proxies)]

    async def write(pipe: Pipeline, current: Certificate) -> CertificateDeleted:
        check(current)
        told = await queue_certificate_delete(storage, pipe, current)
        return CertificateDeleted(cert_name=name, proxies_updated=told)

    return await storage.certificates.edit(name, write, companions)


@translated
async def delete_proxy(
    storage: Storage,
    hostname: str,
    *,
    check: ProxyCheck = anyone,
    with_certificate: CertificateChoice | None = None,
) -> ProxyDeleted:
    """Delete the proxy and queue `proxy_deleted`, atomically; with the certificate it names
    too when `with_certificate` chooses it. `check` may raise to refuse."""

    def companions(target: ProxyTarget) -> list[str]:
        named = target.cert_name
        return [keys.cert(named)] if with_certificate is not None and named else []

    async def remove(pipe: Pipeline, current: ProxyTarget) -> ProxyDeleted:
        check(current)
        certificate = await _chosen_certificate(storage, current, with_certificate)
        ProxyRepository.queue_delete(pipe, current)
        if certificate is not None:
            await queue_certificate_delete(storage, pipe, certificate)
        return ProxyDeleted(
            hostname=hostname,
            deleted_certificate=certificate.cert_name if certificate else None,
        )

    return await storage.proxies.edit(hostname, remove, companions)


async def _chosen_certificate(
    storage: Storage, target: ProxyTarget, choice: CertificateChoice | None
) -> Certificate | None:
    if choice is None or target.cert_name is None:
        return None
    certificate = await storage.certificates.get(target.cert_name)
    return certificate if certificate is not None and choice(certificate) else None


# --- owners and what they hold ----------------------------------------------------------------


@dataclass(frozen=True)
class Holdings:
    """Records of one owner (or some of them: the orphan sweep deletes one at a time)."""

    proxies: list[ProxyTarget] = field(default_factory=list)
    certificates: list[Certificate] = field(default_factory=list)
    external: list[ExternalService] = field(default_factory=list)
    docker: list[DockerService] = field(default_factory=list)
    routes: list[Route] = field(default_factory=list)

    def watched_keys(self) -> list[str]:
        """The keys whose change makes a deletion of these records start over."""
        watched = [k for p in self.proxies for k in ProxyRepository.watched_keys(p)]
        watched += [k for c in self.certificates for k in CertificateRepository.watched_keys(c)]
        watched += [k for s in self.external for k in ExternalServiceRepository.watched_keys(s)]
        watched += [k for s in self.docker for k in DockerServiceRepository.watched_keys(s)]
        watched += [k for r in self.routes for k in RouteRepository.watched_keys(r)]
        return watched

    def summary(self) -> OwnedResources:
        return OwnedResources(
            proxies=[p.hostname for p in self.proxies],
            certificates=[c.cert_name for c in self.certificates],
            services=[s.service_name for s in self.external]
            + [s.service_name for s in self.docker],
            routes=[r.route_id for r in self.routes],
        )


@translated
async def holdings_of(storage: Storage, owner: str) -> Holdings:
    return Holdings(
        proxies=await storage.proxies.owned_by(owner),
        certificates=await storage.certificates.owned_by(owner),
        external=await storage.external_services.owned_by(owner),
        docker=await storage.docker_services.owned_by(owner),
        routes=await storage.routes.owned_by(owner),
    )


@translated
async def queue_holdings_delete(storage: Storage, pipe: Pipeline, held: Holdings) -> None:
    """Queue the deletion of every record in `held`, each with its own cascade: proxies first,
    so a certificate deleted with them tells only the proxies that survive."""
    for proxy in held.proxies:
        ProxyRepository.queue_delete(pipe, proxy)
    for certificate in held.certificates:
        await queue_certificate_delete(storage, pipe, certificate)
    for service in held.external:
        ExternalServiceRepository.queue_delete(pipe, service)
    for container in held.docker:
        await storage.docker_services.queue_delete(pipe, container)
    for route in held.routes:
        RouteRepository.queue_delete(pipe, route)


@translated
async def delete_token(storage: Storage, name: str) -> OwnedResources:
    """Delete a token and everything it owns in one transaction, or nothing at all (`NotFound`
    when it is gone, also when another delete took it a moment ago)."""
    return await retrying_conflicts(lambda: _delete_token_once(storage, name))


async def _delete_token_once(storage: Storage, name: str) -> OwnedResources:
    token = await storage.tokens.get(name)
    if token is None:
        raise NotFound("token", name)
    held = await holdings_of(storage, token.hash)
    watched = [keys.token(token.name), *held.watched_keys()]
    async with storage.redis.pipeline(transaction=True) as pipe, pipe.watch(*watched):
        unchanged = await storage.tokens.get(name) == token
        if not unchanged or await holdings_of(storage, token.hash) != held:
            raise WatchError("the token or what it owns changed before it was watched")
        logins = [keys.github_login(login) for login in token.github_users]
        pipe.delete([keys.token(token.name), keys.token_hash(token.hash), *logins])
        await queue_holdings_delete(storage, pipe, held)
    return held.summary()
