"""Orphans: what an older or crashed gateway can leave in Redis, found and removed atomically.

Today every delete takes its companions along in one transaction (a token its proxies,
certificates, services and routes; a certificate its domain mappings; a route its indexes), so
nothing here is made by this gateway's own writes, with one exception: a replica may record a
workflow state just after its proxy was deleted. What is looked for:

- records (proxy, certificate, external or Docker service, route) whose owner token is gone:
  deleted by the very cascade that deletes a token's records (`cascades`: events, certificate
  hand-over, indexes). A record whose owner hash is unknown but whose `created_by` names an
  existing token is kept: that token got a new secret (the admin token does when ADMIN_TOKEN
  changes), the record is not abandoned;
- `token:hash:{hash}` naming no token, or a token with another hash;
- `cert:domain:{domain}` naming a certificate that does not exist: handed to another certificate
  covering the domain (issued ones first), else deleted;
- route indexes (`route:unique:…`, `route:priority:…`) of no route;
- `service:url:{name}` of no service, `services:external` entries without a record;
- `workflow:state:{hostname}` of no proxy, `cert:status:{name}` of no certificate.

Dangling references that can be meant are reported and kept: a proxy naming a certificate that
does not exist (yet), a route to a service or proxy that does not exist (routes may be created
first). So is a proxy naming another owner's certificate (made before the tenant model refused
it): that certificate never serves it, and only the admin can say which one should.

The removal is one MULTI/EXEC under WATCH of every key the survey's verdicts rest on; the survey is
made again once those keys are watched and must agree, so nothing that changed meanwhile is
removed (else it starts over).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from coredis.exceptions import WatchError

from oauthproxy.models.certificates import Certificate
from oauthproxy.models.cleanup import CleanupReport, Orphan, OrphanAction
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.models.routes import Route, TargetType
from oauthproxy.models.services import DockerService, ExternalService
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, Redis, retrying_conflicts, scan_keys
from oauthproxy.storage.cascades import Holdings, queue_holdings_delete
from oauthproxy.storage.routes import unique_key
from oauthproxy.storage.services import API_SERVICE
from oauthproxy.tenancy.certificates import links

if TYPE_CHECKING:
    from oauthproxy.storage import Storage

T = TypeVar("T")

Write = Callable[[Pipeline], Awaitable[object]]
"""Queues one orphan's removal on the transaction."""

Owned = ProxyTarget | Certificate | ExternalService | DockerService | Route


@dataclass
class Survey:
    orphans: list[Orphan] = field(default_factory=list)
    watched: list[str] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)

    def keep(self, kind: str, name: str, key: str, problem: str) -> None:
        self.orphans.append(
            Orphan(kind=kind, name=name, key=key, problem=problem, action=OrphanAction.KEEP)
        )

    def remove(
        self,
        orphan: Orphan,
        write: Write,
        watched: Iterable[str],
    ) -> None:
        self.orphans.append(orphan)
        self.writes.append(write)
        self.watched.extend(watched)


def _queued(queue: Callable[[Pipeline, T], object], item: T) -> Write:
    """`queue(pipe, item)` as a `Write`."""

    async def write(pipe: Pipeline) -> None:
        queue(pipe, item)

    return write


def _delete_keys(pipe: Pipeline, doomed: list[str]) -> None:
    pipe.delete(doomed)


def _deleting(*doomed: str) -> Write:
    return _queued(_delete_keys, list(doomed))


def _point_domain(pipe: Pipeline, mapping: tuple[str, str]) -> None:
    key, cert_name = mapping
    pipe.set(key, cert_name)


def _drop_external_name(pipe: Pipeline, name: str) -> None:
    pipe.srem(keys.SERVICES_EXTERNAL, [name])


def _deleted(kind: str, name: str, key: str, problem: str) -> Orphan:
    return Orphan(kind=kind, name=name, key=key, problem=problem, action=OrphanAction.DELETE)


async def _values(redis: Redis, found: list[str]) -> dict[str, str]:
    values = await redis.mget(found) if found else []
    return {key: value for key, value in zip(found, values, strict=True) if value is not None}


class _Surveyor:
    """Reads everything once, then judges each kind of key against it."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.redis = storage.redis
        self.survey = Survey()

    async def run(self) -> Survey:
        storage = self.storage
        self.tokens = {token.name: token for token in await storage.tokens.all()}
        self.hashes = {token.hash for token in self.tokens.values()}
        self.proxies = {p.hostname: p for p in await storage.proxies.all()}
        self.certificates = {c.cert_name: c for c in await storage.certificates.all()}
        self.routes = await storage.routes.all()
        self.docker = {s.service_name: s for s in await storage.docker_services.all()}
        self.external_keys = set(await scan_keys(self.redis, keys.service_external("*")))
        self.doomed_certificates: set[str] = set()
        await self._token_hashes()
        await self._owned_records()
        await self._domains()
        await self._route_indexes()
        await self._service_urls()
        await self._leftovers(keys.workflow_state, "workflow_state", set(self.proxies), "proxy")
        await self._leftovers(keys.cert_status, "cert_status", set(self.certificates), "cert")
        self._dangling_references()
        return self.survey

    # --- tokens and what they own -------------------------------------------------------------

    async def _token_hashes(self) -> None:
        prefix = keys.token_hash("")
        mappings = await _values(self.redis, await scan_keys(self.redis, prefix + "*"))
        for key, name in mappings.items():
            token = self.tokens.get(name)
            if token is not None and token.hash == key[len(prefix) :]:
                continue
            problem = (
                f"names token {name!r}, which does not exist"
                if token is None
                else f"names token {name!r}, whose secret has another hash"
            )
            orphan = _deleted("token_hash", key[len(prefix) :], key, problem)
            self.survey.remove(orphan, _deleting(key), [key, keys.token(name)])

    async def _owned_records(self) -> None:
        every_proxy = [keys.proxy(hostname) for hostname in self.proxies]
        for proxy in self.proxies.values():
            key = keys.proxy(proxy.hostname)
            self._owned("proxy", proxy.hostname, key, proxy, Holdings(proxies=[proxy]))
        for cert in self.certificates.values():
            name, held = cert.cert_name, Holdings(certificates=[cert])
            if self._owned("certificate", name, keys.cert(name), cert, held, every_proxy):
                self.doomed_certificates.add(name)
        for service in await self.storage.external_services.all():
            name, held = service.service_name, Holdings(external=[service])
            self._owned("service", name, keys.service_external(name), service, held)
        for container in self.docker.values():
            name, held = container.service_name, Holdings(docker=[container])
            self._owned("docker_service", name, keys.docker_service(name), container, held)
        for route in self.routes:
            key = keys.route(route.route_id)
            self._owned("route", route.route_id, key, route, Holdings(routes=[route]))

    def _owned(
        self,
        kind: str,
        name: str,
        key: str,
        record: Owned,
        held: Holdings,
        also_watched: Sequence[str] = (),
    ) -> bool:
        """Judge one owned record (`held` holds just it); whether it is to be deleted."""
        owner = record.owner_token_hash
        if owner is None or owner in self.hashes:
            return False
        if record.created_by in self.tokens:
            self.survey.keep(
                kind, name, key,
                f"its owner hash is unknown, but its creator {record.created_by!r} exists "
                "(that token's secret changed); the admin can still change it",
            )  # fmt: skip
            return False
        problem = f"its owner token ({record.created_by or 'unnamed'}) no longer exists"
        storage = self.storage

        async def write(pipe: Pipeline) -> None:
            await queue_holdings_delete(storage, pipe, held)

        watched = [*held.watched_keys(), *also_watched, keys.token_hash(owner)]
        self.survey.remove(_deleted(kind, name, key, problem), write, watched)
        return True

    # --- indexes and mappings -----------------------------------------------------------------

    async def _domains(self) -> None:
        prefix = keys.cert_domain("")
        mappings = await _values(self.redis, await scan_keys(self.redis, prefix + "*"))
        living = [
            c for name, c in self.certificates.items() if name not in self.doomed_certificates
        ]
        for key, name in mappings.items():
            if name in self.certificates:
                continue
            domain = key[len(prefix) :]
            covering = sorted(
                (c for c in living if domain in c.domains), key=lambda c: not c.issued
            )
            problem = f"points at certificate {name!r}, which does not exist"
            if not covering:
                orphan = _deleted("cert_domain", domain, key, problem)
                self.survey.remove(orphan, _deleting(key), [key, keys.cert(name)])
                continue
            successor = covering[0].cert_name
            orphan = Orphan(
                kind="cert_domain", name=domain, key=key,
                problem=f"{problem}; handed to {successor!r}", action=OrphanAction.HAND_OVER,
            )  # fmt: skip
            write = _queued(_point_domain, (key, successor))
            self.survey.remove(orphan, write, [key, keys.cert(name), keys.cert(successor)])

    async def _route_indexes(self) -> None:
        expected: dict[str, str] = {}
        for route in self.routes:
            expected[unique_key(route)] = route.route_id
            expected[keys.route_priority(route.priority, route.route_id)] = route.route_id
        found = await scan_keys(self.redis, "route:unique:*")
        found += await scan_keys(self.redis, "route:priority:*")
        for key, route_id in (await _values(self.redis, found)).items():
            if expected.get(key) == route_id:
                continue
            problem = f"indexes route {route_id!r}, which does not exist or moved"
            orphan = _deleted("route_index", key.removeprefix("route:"), key, problem)
            self.survey.remove(orphan, _deleting(key), [key, keys.route(route_id)])

    async def _service_urls(self) -> None:
        members = await self.redis.smembers(keys.SERVICES_EXTERNAL)
        for name in sorted(members):
            record = keys.service_external(name)
            if record in self.external_keys:
                continue
            orphan = _deleted(
                "service_set_entry", name, keys.SERVICES_EXTERNAL,
                f"lists external service {name!r}, which has no record",
            )  # fmt: skip
            write = _queued(_drop_external_name, name)
            self.survey.remove(orphan, write, [keys.SERVICES_EXTERNAL, record])
        prefix = keys.service_url("")
        for key in await scan_keys(self.redis, prefix + "*"):
            name = key[len(prefix) :]
            if name == API_SERVICE or name in self.docker:
                continue
            if keys.service_external(name) in self.external_keys:
                continue
            orphan = _deleted("service_url", name, key, f"no service is named {name!r}")
            watched = [key, keys.service_external(name), keys.docker_service(name)]
            self.survey.remove(orphan, _deleting(key), watched)

    async def _leftovers(
        self, key_of: Callable[[str], str], kind: str, owners: set[str], owner_key: str
    ) -> None:
        """`{kind}` keys whose proxy or certificate (`owners`) is gone."""
        prefix = key_of("")
        for key in await scan_keys(self.redis, prefix + "*"):
            name = key[len(prefix) :]
            if name in owners:
                continue
            what = "proxy" if owner_key == "proxy" else "certificate"
            orphan = _deleted(kind, name, key, f"there is no {what} {name!r}")
            owner = keys.proxy(name) if owner_key == "proxy" else keys.cert(name)
            self.survey.remove(orphan, _deleting(key), [key, owner])

    def _dangling_references(self) -> None:
        """Reported, never changed: they can be meant, or (a link across owners, which a gateway
        before the tenant model let an owner make) only the admin knows what to name instead."""
        for proxy in self.proxies.values():
            name = proxy.cert_name
            named = self.certificates.get(name) if name is not None else None
            if name is not None and named is None:
                problem = f"names certificate {name!r}, which does not exist"
            elif named is not None and not links(named, proxy):
                problem = (
                    f"names certificate {name!r} of another owner, which never serves it; "
                    "name one of the proxy's owner's"
                )
            else:
                continue
            self.survey.keep("proxy", proxy.hostname, keys.proxy(proxy.hostname), problem)
        services = {*self.docker, API_SERVICE}
        services |= {key.removeprefix(keys.service_external("")) for key in self.external_keys}
        for route in self.routes:
            if route.target_type is TargetType.SERVICE and route.target_value not in services:
                self.survey.keep(
                    "route", route.route_id, keys.route(route.route_id),
                    f"targets service {route.target_value!r}, which does not exist",
                )  # fmt: skip


async def survey(storage: Storage) -> Survey:
    return await _Surveyor(storage).run()


async def clean_up(storage: Storage, *, dry_run: bool) -> CleanupReport:
    """Find the orphans and (unless `dry_run`) remove them all in one transaction."""
    return await retrying_conflicts(lambda: _clean_up_once(storage, dry_run=dry_run))


async def _clean_up_once(storage: Storage, *, dry_run: bool) -> CleanupReport:
    found = await survey(storage)
    if dry_run or not found.writes:
        return CleanupReport(dry_run=dry_run, removed=0, orphans=found.orphans)
    async with (
        storage.redis.pipeline(transaction=True) as pipe,
        pipe.watch(*dict.fromkeys(found.watched)),
    ):
        confirmed = await survey(storage)
        # only what is removed or handed over must not have changed (it is what is watched):
        # an entry kept only as a warning (a proxy naming a missing certificate) changes with
        # its owner's writes, and an owner renaming it in a loop kept the admin's clean-up from
        # ever committing
        if _acted_on(confirmed.orphans) != _acted_on(found.orphans):
            raise WatchError("the orphans changed before they were watched")
        for write in confirmed.writes:
            await write(pipe)
    return CleanupReport(dry_run=False, removed=len(confirmed.writes), orphans=confirmed.orphans)


def _acted_on(orphans: list[Orphan]) -> list[Orphan]:
    return [orphan for orphan in orphans if orphan.action is not OrphanAction.KEEP]
