"""`cert:{name}`, `cert:domain:{domain}` and `cert:status:{name}`: certificates and the domains
they hold. Knows nothing of proxies: what a certificate does to the proxies it serves is
`cascades`'s."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from coredis import PureToken

from oauthproxy.errors import Conflict
from oauthproxy.models.certificates import Certificate, GenerationStatus
from oauthproxy.storage import keys
from oauthproxy.storage.base import Pipeline, Redis, atomically, dump, load, translate_errors
from oauthproxy.storage.editing import Edit, EditableRepository, no_companions
from oauthproxy.storage.windows import WindowCount, WindowCounter

T = TypeVar("T")

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

# An owner's ACME account emails in the window (KEYS[1]): a known one (ARGV[1]) passes, a new
# one passes while fewer than ARGV[2] are known (the window, ARGV[3] ms, starts with the
# first); else the milliseconds left in the window.
_CLAIM_EMAIL = """
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 1 then return 0 end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return math.max(redis.call('PTTL', KEYS[1]), 1)
end
redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3], 'NX')
return 0
"""


def successors(others: list[Certificate], domain: str) -> list[str]:
    """The other certificates for `domain`, issued ones first: who takes it over."""
    covering = [c for c in others if domain in c.domains]
    return [c.cert_name for c in sorted(covering, key=lambda c: not c.issued)]


@translate_errors
class CertificateRepository(EditableRepository[Certificate]):
    model = Certificate
    prefix = keys.cert("")
    skip = (keys.cert_domain(""), keys.cert_status(""), keys.cert_lock(""))
    kind = "certificate"

    def __init__(self, redis: Redis) -> None:
        super().__init__(redis)
        self._hand_over = redis.register_script(_HAND_OVER_DOMAIN)
        self._claim_email = redis.register_script(_CLAIM_EMAIL)
        self._windows = WindowCounter(redis)

    async def count_self_signed(self, owner_hash: str, window_ms: int) -> WindowCount:
        """Count one more self-signed certificate made for `owner_hash` in its window."""
        return await self._windows.count(keys.self_signed_rate(owner_hash), window_ms)

    async def count_acme_order(self, owner_hash: str, window_ms: int) -> WindowCount:
        """Count one more ACME certificate ordered for `owner_hash` in its window."""
        return await self._windows.count(keys.acme_order_rate(owner_hash), window_ms)

    async def count_acme_order_within(
        self, owner_hash: str, limit: int, window_ms: int
    ) -> WindowCount:
        """`count_acme_order` while fewer than `limit` are counted (`count` 0, nothing counted,
        when they are): the manager's retries and renewals, which wait rather than fail."""
        return await self._windows.count_within(keys.acme_order_rate(owner_hash), window_ms, limit)

    async def count_owner_acme_order(self, limit: int, window_ms: int) -> WindowCount:
        """Count one more ACME certificate ordered by any owner in the gateway-wide window,
        while fewer than `limit` are counted (`count` 0, nothing counted, when they are)."""
        return await self._windows.count_within(keys.acme_owner_orders_rate(), window_ms, limit)

    async def claim_acme_email(
        self, owner_hash: str, email: str, limit: int, window_ms: int
    ) -> int:
        """Note that `owner_hash` ordered for `email` in the window (which starts with its
        first email): 0 when it may (a known email, or one of `limit` new ones), else the
        milliseconds until the window ends."""
        refused: int = await self._claim_email(
            keys=[keys.acme_account_emails(owner_hash)], args=[email, limit, window_ms]
        )
        return refused

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
        await atomically(self._redis, [key], lambda pipe: self.queue_create(pipe, certificate))

    async def queue_create(self, pipe: Pipeline, certificate: Certificate) -> None:
        """`create` on a transaction that already WATCHes `cert:{name}`."""
        if await self._redis.exists([keys.cert(certificate.cert_name)]):
            raise Conflict(
                "cert_name", f"a certificate named {certificate.cert_name!r} already exists"
            )
        pipe.set(keys.cert(certificate.cert_name), dump(certificate))
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

    async def queue_delete(self, pipe: Pipeline, certificate: Certificate) -> None:
        """Queue the certificate's deletion on the transaction `pipe`: its record and status
        go, each domain it held is handed to another certificate covering it (issued ones
        first), else unmapped. The hand-over runs when the transaction does, so a domain goes
        only to a certificate that still exists then (not one the same transaction deletes)."""
        name = certificate.cert_name
        others = [c for c in await self.all() if c.cert_name != name]
        pipe.delete([keys.cert(name), keys.cert_status(name)])
        for domain in certificate.domains:
            heirs = successors(others, domain)
            self._hand_over(
                keys=[keys.cert_domain(domain), *map(keys.cert, heirs)],
                args=[name, *heirs],
                client=pipe,
            )

    @staticmethod
    def watched_keys(certificate: Certificate) -> list[str]:
        return [keys.cert(certificate.cert_name)] + [
            keys.cert_domain(d) for d in certificate.domains
        ]
