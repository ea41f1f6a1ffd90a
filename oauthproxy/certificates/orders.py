"""The owners' ACME order budgets, which every order placed for an owner's certificate counts
against: the API's (a new certificate, a proxy's automatic one) and the manager's (each retry of
a failed attempt, each renewal). The admin's certificates are never counted.

Every order goes to the one ACME account of ADMIN_EMAIL, whose budget at the CA (Let's Encrypt:
300 new orders per account per 3 hours) the admin's orders and renewals need too."""

from __future__ import annotations

from pydantic import BaseModel

from oauthproxy.storage.certificates import CertificateRepository

ACME_ORDERS_PER_HOUR = 20
"""ACME certificates one owner token may order per hour. Every order is placed on the one ACME
account of ADMIN_EMAIL, whose budget at the CA is every owner's (Let's Encrypt: 300 new orders
per account per 3 hours), and holds an issuance slot (CERT_GEN_MAX_WORKERS) others wait for;
deleting a certificate frees its quota slot, so create and delete in a loop spent it all."""

HOUR_MS = 3_600_000


class OrderRefused(BaseModel):
    """Why an owner's order may not be placed now, and until when."""

    limit: int
    who: str
    remaining_ms: int

    def message(self) -> str:
        seconds = max(1, -(-self.remaining_ms // 1000))
        return (
            f"not ordered: at most {self.limit} ACME certificate orders per hour for {self.who} "
            f"(retries and renewals count); next attempt in {seconds} s"
        )


async def count_owner_order(
    certificates: CertificateRepository, owner_hash: str, owners_limit: int
) -> OrderRefused | None:
    """Count one order (a retry's or a renewal's) for the owner `owner_hash` in its hourly
    window and in the owners' gateway-wide one (ACME_OWNER_ORDERS_PER_HOUR = `owners_limit`);
    None when both had room, else which was full and when it ends. A refused order is counted
    in neither window."""
    own = await certificates.count_acme_order_within(owner_hash, ACME_ORDERS_PER_HOUR, HOUR_MS)
    if not own.count:
        return OrderRefused(
            limit=ACME_ORDERS_PER_HOUR, who="its owner", remaining_ms=own.remaining_ms
        )
    together = await certificates.count_owner_acme_order(owners_limit, HOUR_MS)
    if not together.count:
        return OrderRefused(
            limit=owners_limit,
            who="all owner tokens together (ACME_OWNER_ORDERS_PER_HOUR)",
            remaining_ms=together.remaining_ms,
        )
    return None
