"""Smart certificate handling for a new HTTPS proxy that names no certificate.

- A certificate of the proxy's owner already covers the hostname: the proxy names it (the one
  `cert:domain:{hostname}` points at first). Another owner's certificate is never reused: a
  certificate serves only its owner's proxies (`tenancy.certificates`).
- Otherwise one is ordered, `proxy-{hostname with dots as dashes}`, with the request's
  `cert_email`, else the token's, else ADMIN_EMAIL. Tokens may not create `proxy-` names
  (`tenancy.certificates.check_name`); when the name is taken all the same (by the admin, by a
  certificate made before that rule, or by a hostname that reads the same with dashes:
  `a-b.example.com` and `a.b.example.com`), the new one gets a random suffix, so no one can
  take its name in advance. The proxy serves HTTP at once; when the
  certificate is issued the proxy gets its name and upgrades to HTTPS (`certificate_ready`).
- No email known, no certificate manager, or the tenant rules refuse the certificate (its quota
  is used up, say): nothing is ordered.

A `cert_name` given explicitly (on create or update) must name a certificate of the proxy's
owner, or none that exists yet (`check_named`).

The outcome is reported in the response headers `X-Certificate-Action` (`reused`, `ordered`,
`skipped`), `X-Certificate-Detail` and, when a certificate is reused or ordered,
`X-Certificate-Name` (what a client follows to see it issued), so the body stays the proxy record.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from enum import StrEnum

from quart import current_app

from oauthproxy.api.certificates import acme_email, caller, new_acme_certificate, order
from oauthproxy.api.errors import ApiError
from oauthproxy.api.ownership import storage
from oauthproxy.api.state import app_state
from oauthproxy.errors import Conflict
from oauthproxy.models.certificates import Certificate
from oauthproxy.models.proxies import ProxyTarget, ProxyTargetCreate
from oauthproxy.tenancy.caller import Refused
from oauthproxy.tenancy.certificates import AUTOMATIC_PREFIX, check_attach, links

MAX_NAME = 64


class Action(StrEnum):
    NONE = "none"
    REUSED = "reused"
    ORDERED = "ordered"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Plan:
    action: Action
    detail: str = ""
    cert_name: str | None = None
    email: str | None = None

    def headers(self) -> dict[str, str]:
        if self.action is Action.NONE:
            return {}
        named = {"X-Certificate-Name": self.cert_name} if self.cert_name else {}
        return {
            "X-Certificate-Action": self.action.value,
            "X-Certificate-Detail": self.detail,
            **named,
        }

    def applied_to(self, target: ProxyTarget) -> ProxyTarget:
        """The proxy as stored: naming a reused certificate, unchanged otherwise."""
        if self.action is Action.REUSED:
            return target.model_copy(update={"cert_name": self.cert_name})
        return target


def certificate_name(hostname: str) -> str:
    """`proxy-api-example-com`; a long hostname is shortened with a hash to stay a valid name."""
    name = AUTOMATIC_PREFIX + hostname.replace(".", "-")
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(hostname.encode()).hexdigest()[:8]
    return f"{name[: MAX_NAME - 9]}-{digest}"


def unforeseeable_name(hostname: str) -> str:
    """`proxy-api-example-com-1f2e3d4c`: for when `certificate_name` is taken by a certificate
    the proxy may not use (the suffix is random, so no one can create it first)."""
    name = AUTOMATIC_PREFIX + hostname.replace(".", "-")
    return f"{name[: MAX_NAME - 9]}-{secrets.token_hex(4)}"


def _reuse(name: str) -> Plan:
    return Plan(Action.REUSED, f"serving HTTPS with certificate {name}", cert_name=name)


async def plan(target: ProxyTarget, data: ProxyTargetCreate) -> Plan:
    """What to do about the new proxy's certificate (nothing is written here)."""
    if not target.enable_https or target.cert_name is not None:
        return Plan(Action.NONE)
    certificates = storage().certificates
    mapped = await certificates.name_for_domain(target.hostname)
    covering = _own_covering(target, await certificates.all(), mapped)
    if covering is not None:
        return _reuse(covering)
    name = certificate_name(target.hostname)
    if await certificates.get(name) is not None:  # not one it may use: that would be covering
        name = unforeseeable_name(target.hostname)
    return _ordering(name, acme_email(data.cert_email))


def _own_covering(
    target: ProxyTarget, certificates: list[Certificate], mapped: str | None
) -> str | None:
    """The certificate of the proxy's owner that covers its hostname: the mapped one if it
    qualifies, else an issued one, else any."""
    own = [c for c in certificates if target.hostname in c.domains and links(c, target)]
    ranked = sorted(own, key=lambda c: (c.cert_name != mapped, not c.issued, c.cert_name))
    return ranked[0].cert_name if ranked else None


def _ordering(name: str, email: str | None) -> Plan:
    if email is None:
        return Plan(
            Action.SKIPPED,
            "no certificate ordered: no email (give cert_email, set the token's cert_email, "
            "or set ADMIN_EMAIL); the proxy serves HTTP only",
        )
    if app_state(current_app).certificates is None:
        return Plan(Action.SKIPPED, "no certificate ordered: the certificate manager is off")
    return Plan(Action.ORDERED, f"ordering certificate {name} for {email}", name, email)


async def carry_out(chosen: Plan, target: ProxyTarget, *, staging: bool) -> Plan:
    """Order the certificate the plan calls for, once the proxy exists."""
    if chosen.action is not Action.ORDERED or chosen.cert_name is None or chosen.email is None:
        return chosen
    certificate = new_acme_certificate(
        chosen.cert_name, [target.hostname], chosen.email, staging=staging
    )
    try:
        await order(certificate)
    except Conflict:
        return await _reused_after_race(chosen.cert_name, target)
    except Refused as refused:
        return Plan(Action.SKIPPED, f"no certificate ordered: {refused.detail}")
    except ApiError as refused:  # an owner's ACME budget spent: the proxy serves HTTP only
        if refused.status != 429:
            raise
        return Plan(Action.SKIPPED, f"no certificate ordered: {refused.detail}")
    return chosen


async def _reused_after_race(name: str, target: ProxyTarget) -> Plan:
    """Someone created the certificate meanwhile: the proxy names it only if it may."""
    existing = await storage().certificates.get(name)
    if existing is not None and links(existing, target) and target.hostname in existing.domains:
        return _reuse(name)
    return Plan(Action.SKIPPED, f"a certificate named {name} exists already")


async def check_named(target: ProxyTarget) -> None:
    """Refuse a `cert_name` naming another owner's certificate (404 when the caller may not
    see it, 403 otherwise)."""
    if target.cert_name is None:
        return
    named = await storage().certificates.get(target.cert_name)
    check_attach(caller(), target, named)


async def check_named_change(hostname: str, changes: dict[str, object]) -> None:
    """`check_named` for an update that sets `cert_name` on the stored proxy `hostname`."""
    name = changes.get("cert_name")
    current = await storage().proxies.get(hostname) if isinstance(name, str) else None
    if current is not None:
        await check_named(current.model_copy(update={"cert_name": name}))
