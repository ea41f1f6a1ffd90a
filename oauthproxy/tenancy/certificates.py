"""Who may create, see and link which certificates.

A certificate holds a private key for its names, and whichever proxy it serves hands that key's
owner the proxy's HTTPS: so a certificate is a claim on names, and a link between a certificate
and a proxy is a link between their owners. The rules:

- A token may create a certificate only for names it owns a proxy for, or that nobody has
  claimed: no proxy of another owner and no certificate of another owner covers the name. The
  admin may create any; a token over its certificate quota may create none.
- A certificate serves (is linked to) only proxies of its own owner, whether the link is made
  automatically (a proxy reusing a covering certificate, an issued certificate naming waiting
  proxies, a proxy naming no certificate and served by its domain's) or explicitly (`cert_name`).
  So deleting or renewing a certificate never changes another owner's proxy.
- A token sees only its own certificates; another owner's reads exactly as a missing one (404),
  so names cannot be probed. The admin sees all.
- Names beginning `proxy-` are the gateway's, for the certificates it orders for new HTTPS
  proxies: a token may not create one (422), so no owner can take the name another owner's proxy
  would get. (The admin may; a proxy whose name is taken gets an unforeseeable one instead.)

Pure: frozen facts in, a decision out or `Refused` raised. The API gathers the facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget
from oauthproxy.tenancy.caller import Caller, Refused, forbidden

QUOTA_SETTING = "TOKEN_MAX_CERTIFICATES"
AUTOMATIC_PREFIX = "proxy-"
"""How the names of the certificates the gateway orders for proxies begin."""


@dataclass(frozen=True)
class NameClaims:
    """Who holds one name today: the owner of its proxy (when there is a proxy) and the owners
    of the certificates covering it. An owner is a token hash, None for records without one."""

    name: str
    has_proxy: bool = False
    proxy_owner: str | None = None
    certificate_owners: frozenset[str | None] = frozenset()


def name_claims(
    names: Sequence[str], proxies: Iterable[ProxyTarget], certificates: Iterable[Certificate]
) -> list[NameClaims]:
    """Who holds each of `names`, from the stored proxies and certificates."""
    by_hostname = {proxy.hostname: proxy for proxy in proxies}
    stored = list(certificates)
    claims = []
    for name in names:
        proxy = by_hostname.get(name)
        claims.append(
            NameClaims(
                name=name,
                has_proxy=proxy is not None,
                proxy_owner=proxy.owner_token_hash if proxy is not None else None,
                certificate_owners=frozenset(
                    c.owner_token_hash for c in stored if name in c.domains
                ),
            )
        )
    return claims


def check_create(
    caller: Caller,
    claims: Sequence[NameClaims],
    owned: int,
    quota: int,
    reserved: frozenset[str] = frozenset(),
) -> None:
    """Refuse a new certificate for the names in `claims` when one is the gateway's own
    (`reserved`: API_HOSTNAMES and the OAuth issuer's, as for proxies) or another owner holds
    one of them (403 `forbidden`, field `domains`), or when the caller already owns `quota`
    certificates (403 `quota_exceeded`). The admin is exempt from all three."""
    if caller.is_admin:
        return
    for claim in claims:
        if claim.name in reserved:
            raise forbidden(
                f"{claim.name} is the gateway's own hostname: only the admin token may have a "
                "certificate for it",
                field="domains",
            )
    for claim in claims:
        problem = _claimed_by_another(caller, claim)
        if problem is not None:
            raise forbidden(f"{claim.name}: {problem}", field="domains")
    if owned >= quota:
        raise Refused(
            403,
            "quota_exceeded",
            f"this token owns {owned} certificates, the most {QUOTA_SETTING} allows ({quota})",
            field="cert_name",
        )


def check_name(caller: Caller, cert_name: str) -> None:
    """Refuse a token's certificate named like the ones the gateway orders for proxies (422,
    field `cert_name`): a `proxy-` name made first by one owner would otherwise take the name of
    the certificate another owner's new proxy gets. The admin is exempt."""
    if not caller.is_admin and cert_name.lower().startswith(AUTOMATIC_PREFIX):
        raise Refused(
            422,
            "validation_error",
            f"names beginning {AUTOMATIC_PREFIX!r} are the gateway's, for the certificates it "
            "orders for proxies: choose another name",
            field="cert_name",
        )


def _claimed_by_another(caller: Caller, claim: NameClaims) -> str | None:
    if claim.has_proxy:
        if claim.proxy_owner == caller.token_hash:
            return None
        return "another owner's proxy serves this name"
    if any(owner != caller.token_hash for owner in claim.certificate_owners):
        return "another owner's certificate covers this name"
    return None


def may_see(caller: Caller, certificate: Certificate) -> bool:
    return caller.owns(certificate.owner_token_hash)


def visible(caller: Caller, certificates: Iterable[Certificate]) -> list[Certificate]:
    """The certificates the caller may list."""
    return [c for c in certificates if may_see(caller, c)]


def check_visible(caller: Caller, certificate: Certificate | None, name: str) -> Certificate:
    """The certificate, if the caller may see it; else the very answer a missing one gets."""
    if certificate is None or not may_see(caller, certificate):
        raise Refused(404, "not_found", f"certificate {name!r} not found", field="certificate")
    return certificate


def check_renew(caller: Caller, certificate: Certificate, due: bool) -> None:
    """Refuse (409 `not_due`) an owner token's renewal of a certificate the renewal loop would
    not renew now (`due`: inside RENEWAL_THRESHOLD_DAYS of its expiry, waiting, or failed and
    past its retry time). Each renewal is an order on an ACME account the owners may share,
    whose limits (orders per account, certificates per name) are everyone's: renewing at will
    would spend them. The admin may renew any certificate at any time."""
    if caller.is_admin or due:
        return
    when = ""
    if certificate.next_attempt_at is not None:
        when = f"; it is retried at {certificate.next_attempt_at:%Y-%m-%d %H:%M} UTC"
    elif certificate.expires_at is not None:
        when = f"; it renews by itself once it expires within {RENEWAL_SETTING}"
    raise Refused(
        409,
        "not_due",
        f"certificate {certificate.cert_name!r} is not due for renewal{when} (only the admin "
        "token may renew it earlier)",
        field="certificate",
    )


RENEWAL_SETTING = "RENEWAL_THRESHOLD_DAYS"


def links(certificate: Certificate, proxy: ProxyTarget) -> bool:
    """Whether the certificate may serve the proxy at all: only when both have one owner. One
    owner is one token hash, or one token name (`created_by`) across a change of that token's
    secret: the admin token gets a new hash when ADMIN_TOKEN changes, and its records keep the
    old one (token names are unique, and a deleted token takes its records with it)."""
    if certificate.owner_token_hash == proxy.owner_token_hash:
        return True
    return certificate.created_by is not None and certificate.created_by == proxy.created_by


def serves(certificate: Certificate, proxy: ProxyTarget) -> bool:
    """Whether the certificate serves the proxy: they have one owner, and the proxy names it, or
    names none and is one of its domains."""
    if not links(certificate, proxy):
        return False
    if proxy.cert_name is None:
        return proxy.hostname in certificate.domains
    return proxy.cert_name == certificate.cert_name


def may_take_domain(certificate: Certificate, proxy: ProxyTarget | None) -> bool:
    """Whether an issued certificate may point its domain's `cert:domain` mapping at itself: not
    when the domain's proxy belongs to another owner (that mapping decides what the proxy
    serves)."""
    return proxy is None or links(certificate, proxy)


def check_attach(caller: Caller, proxy: ProxyTarget, certificate: Certificate | None) -> None:
    """Refuse naming `certificate` as the proxy's: only a certificate of the proxy's owner may
    be named. A name no certificate has yet may be named (it may be ordered later); a caller who
    may not see the certificate gets the answer a missing one would get elsewhere (404)."""
    if certificate is None or links(certificate, proxy):
        return
    check_visible(caller, certificate, certificate.cert_name)
    raise forbidden(
        f"certificate {certificate.cert_name} belongs to another owner than proxy "
        f"{proxy.hostname}; a certificate serves only its owner's proxies",
        field="cert_name",
    )
