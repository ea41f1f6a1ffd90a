"""`cert:{name}`, `cert:domain:{domain}` and `cert:status:{name}`."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from coredis import PureToken

from oauthproxy.errors import Conflict
from oauthproxy.models.certificates import Certificate, GenerationStatus
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, dump, load, translate_errors
from oauthproxy.storage.editing import Edit, EditableRepository, no_companions

T = TypeVar("T")


@translate_errors
class CertificateRepository(EditableRepository[Certificate]):
    model = Certificate
    prefix = keys.cert("")
    skip = (keys.cert_domain(""), keys.cert_status(""), keys.cert_lock(""))
    kind = "certificate"

    async def name_for_domain(self, domain: str) -> str | None:
        return await self._redis.get(keys.cert_domain(domain))

    async def put(self, certificate: Certificate) -> None:
        """Store a certificate and point each of its domains at it, in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.cert(certificate.cert_name), dump(certificate))
            for domain in certificate.domains:
                pipe.set(keys.cert_domain(domain), certificate.cert_name)

    async def create(self, certificate: Certificate) -> None:
        """Store a new certificate (`Conflict` when the name is taken). Domains no certificate
        covers yet point at it now; the others keep theirs until this one is issued."""
        key = keys.cert(certificate.cert_name)
        async with self._redis.pipeline(transaction=True) as pipe, pipe.watch(key):
            if await self._redis.exists([key]):
                raise Conflict(
                    "cert_name", f"a certificate named {certificate.cert_name!r} already exists"
                )
            pipe.set(key, dump(certificate))
            for domain in certificate.domains:
                pipe.set(keys.cert_domain(domain), certificate.cert_name, condition=PureToken.NX)

    async def modify(self, name: str, change: Callable[[Certificate], Certificate]) -> Certificate:
        """Replace the certificate with `change(current)` atomically (`NotFound` if gone)."""

        async def write(pipe: Pipeline, current: Certificate) -> Certificate:
            updated = change(current)
            pipe.set(keys.cert(name), dump(updated))
            return updated

        return await self._edit(name, write)

    async def edit(
        self,
        name: str,
        write: Edit[Certificate, T],
        companions: Callable[[Certificate], list[str]] = no_companions,
    ) -> T:
        """Run `write` on the current certificate in a transaction that also watches
        `companions(current)`; retried until nothing interferes."""
        return await self._edit(name, write, companions)

    async def status(self, name: str) -> GenerationStatus | None:
        return load(GenerationStatus, await self._redis.get(keys.cert_status(name)))

    async def set_status(self, status: GenerationStatus, retention_seconds: int) -> None:
        key = keys.cert_status(status.cert_name)
        await self._redis.set(key, dump(status), ex=retention_seconds)

    async def queue_delete(self, pipe: Pipeline, certificate: Certificate) -> list[str]:
        """Delete the certificate in the transaction `pipe`, hand its domains on and tell the
        proxies it served (see `certificate_links.queue_delete`); their hostnames."""
        # certificate_links reads proxies, and the proxies' repository imports this module
        from oauthproxy.storage import certificate_links

        return await certificate_links.queue_delete(self._redis, pipe, certificate)

    @staticmethod
    def watched_keys(certificate: Certificate) -> list[str]:
        return [keys.cert(certificate.cert_name)] + [
            keys.cert_domain(d) for d in certificate.domains
        ]
