"""`cert:{name}`, `cert:domain:{domain}` and `cert:status:{name}`."""

from __future__ import annotations

from oauthproxy.models.certificates import Certificate
from oauthproxy.storage import keys
from oauthproxy.storage.base import JsonRepository, Pipeline, dump, translate_errors


@translate_errors
class CertificateRepository(JsonRepository[Certificate]):
    model = Certificate
    prefix = keys.cert("")
    skip = (keys.cert_domain(""), keys.cert_status(""))

    async def name_for_domain(self, domain: str) -> str | None:
        return await self._redis.get(keys.cert_domain(domain))

    async def put(self, certificate: Certificate) -> None:
        """Store a certificate and point each of its domains at it, in one transaction."""
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(keys.cert(certificate.cert_name), dump(certificate))
            for domain in certificate.domains:
                pipe.set(keys.cert_domain(domain), certificate.cert_name)

    async def queue_delete(self, pipe: Pipeline, certificate: Certificate) -> None:
        """Delete the certificate, its status and the domain mappings that still point at it."""
        mapped = await self._redis.mget([keys.cert_domain(d) for d in certificate.domains])
        ours = [
            keys.cert_domain(domain)
            for domain, holder in zip(certificate.domains, mapped, strict=True)
            if holder == certificate.cert_name
        ]
        pipe.delete([keys.cert(certificate.cert_name), keys.cert_status(certificate.cert_name)])
        if ours:
            pipe.delete(ours)

    @staticmethod
    def watched_keys(certificate: Certificate) -> list[str]:
        return [keys.cert(certificate.cert_name)] + [
            keys.cert_domain(d) for d in certificate.domains
        ]
